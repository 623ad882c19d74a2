//! Which source records make up a ranking row (`/provenance` on every ranking).

use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};
use tributary_marts::provenance::RankingKey;

use super::{ApiResult, ApiTags, Provenance, default_limit};
use crate::provenance::ProvenancePage;

#[OpenApi]
impl Provenance {
    /// Which sales make up a city's row of the city ranking.
    ///
    /// The current sales of that city in the period (all time, or `month`) — their amounts
    /// sum to the row's revenue and their count is its sales count — each with where its
    /// current version came from: the Postgres LSN and transaction, or the file/ERP record and
    /// the ingestor's provenance; the Kafka record; when it was landed; the ingest trace id.
    /// Read from the lake at the publication's own snapshots, or as `as_of` /
    /// `as_of_snapshot` say. 404 `city-not-found` if the city has no row in the period.
    #[oai(
        path = "/v1/rankings/cities/:city_id/provenance",
        method = "get",
        tag = "ApiTags::Provenance",
        operation_id = "city_provenance"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn city_provenance(
        &self,
        /// City id.
        city_id: Path<i64>,
        /// The period of the row (`YYYY-MM`, UTC); all time when absent.
        #[oai(validator(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$"))]
        month: Query<Option<String>>,
        /// Time travel to a time (RFC 3339), as on the rankings.
        as_of: Query<Option<String>>,
        /// Time travel to a snapshot id, as on the rankings.
        as_of_snapshot: Query<Option<i64>>,
        /// Records per page, 1..=1000.
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
        /// Records to skip.
        #[oai(default)]
        offset: Query<u64>,
    ) -> ApiResult<ProvenancePage> {
        let key = RankingKey::City { city_id: city_id.0 };
        let travel = (month.0.as_deref(), as_of.0.as_deref(), as_of_snapshot.0);
        self.provenance(key, travel, limit.0, offset.0).await
    }

    /// Which sales make up a salesman's row in a city's salesman ranking.
    ///
    /// As `/v1/rankings/cities/{city_id}/provenance`, for the sales of that salesman in that
    /// city. 404 `salesman-not-found` if he has no row there in the period.
    #[oai(
        path = "/v1/rankings/cities/:city_id/salesmen/:salesman_id/provenance",
        method = "get",
        tag = "ApiTags::Provenance",
        operation_id = "city_salesman_provenance"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn city_salesman_provenance(
        &self,
        /// City id.
        city_id: Path<i64>,
        /// Salesman id.
        salesman_id: Path<i64>,
        /// The period of the row (`YYYY-MM`, UTC); all time when absent.
        #[oai(validator(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$"))]
        month: Query<Option<String>>,
        /// Time travel to a time (RFC 3339), as on the rankings.
        as_of: Query<Option<String>>,
        /// Time travel to a snapshot id, as on the rankings.
        as_of_snapshot: Query<Option<i64>>,
        /// Records per page, 1..=1000.
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
        /// Records to skip.
        #[oai(default)]
        offset: Query<u64>,
    ) -> ApiResult<ProvenancePage> {
        let key = RankingKey::CitySalesman {
            city_id: city_id.0,
            salesman_id: salesman_id.0,
        };
        let travel = (month.0.as_deref(), as_of.0.as_deref(), as_of_snapshot.0);
        self.provenance(key, travel, limit.0, offset.0).await
    }

    /// Which sales make up a salesman's row of the nationwide ranking.
    ///
    /// As `/v1/rankings/cities/{city_id}/provenance`, for all of his sales in the period.
    /// 404 `salesman-not-found` if he has no row in the period.
    #[oai(
        path = "/v1/rankings/salesmen/:salesman_id/provenance",
        method = "get",
        tag = "ApiTags::Provenance",
        operation_id = "salesman_provenance"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn salesman_provenance(
        &self,
        /// Salesman id.
        salesman_id: Path<i64>,
        /// The period of the row (`YYYY-MM`, UTC); all time when absent.
        #[oai(validator(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$"))]
        month: Query<Option<String>>,
        /// Time travel to a time (RFC 3339), as on the rankings.
        as_of: Query<Option<String>>,
        /// Time travel to a snapshot id, as on the rankings.
        as_of_snapshot: Query<Option<i64>>,
        /// Records per page, 1..=1000.
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
        /// Records to skip.
        #[oai(default)]
        offset: Query<u64>,
    ) -> ApiResult<ProvenancePage> {
        let key = RankingKey::Salesman {
            salesman_id: salesman_id.0,
        };
        let travel = (month.0.as_deref(), as_of.0.as_deref(), as_of_snapshot.0);
        self.provenance(key, travel, limit.0, offset.0).await
    }
}
