//! Liveness and readiness (the same readiness body as every Tributary service).

use poem_openapi::OpenApi;
use poem_openapi::payload::Json;

use super::{ApiTags, Health};
use crate::model::{ReadinessJson, Status};

#[OpenApi]
impl Health {
    /// Liveness: the process is up.
    #[oai(path = "/healthz", method = "get", tag = "ApiTags::Health")]
    async fn healthz(&self) -> Json<Status> {
        Json(Status {
            status: "ok".into(),
        })
    }

    /// Readiness: 200 when ClickHouse answers (the rankings need nothing else), 503 when it
    /// does not. The lake (time travel, provenance) and the lineage store are checked and
    /// reported too, as optional (`required: false`): their failure does not make the API
    /// unready. The same body as every other Tributary service's `/readyz`.
    #[oai(path = "/readyz", method = "get", tag = "ApiTags::Health")]
    async fn readyz(&self) -> ReadyResponse {
        let readiness = self.readiness.run().await;
        if readiness.is_ready() {
            ReadyResponse::Ready(Json(readiness.into()))
        } else {
            ReadyResponse::NotReady(Json(readiness.into()))
        }
    }
}

/// `/readyz`: the same body either way, 200 or 503.
#[derive(poem_openapi::ApiResponse)]
enum ReadyResponse {
    /// ClickHouse answers: the rankings can be served.
    #[oai(status = 200)]
    Ready(Json<ReadinessJson>),
    /// ClickHouse does not answer (see `checks`).
    #[oai(status = 503)]
    NotReady(Json<ReadinessJson>),
}
