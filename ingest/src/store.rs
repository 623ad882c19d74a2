//! Applying planned changes to the store system's database.

use tokio_postgres::Client;

use crate::sample::{Change, Existing};

/// Errors talking to `salesdb`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Could not connect.
    #[error("cannot connect to salesdb ({url}): {source}; is the stack up (`dev/up`)?")]
    Connect {
        /// Connection string used (it holds no secret beyond the local dev password).
        url: String,
        /// Driver error.
        source: tokio_postgres::Error,
    },
    /// A statement failed.
    #[error("salesdb statement failed while {doing}: {source}")]
    Statement {
        /// What was being done.
        doing: &'static str,
        /// Driver error.
        source: tokio_postgres::Error,
    },
}

/// Connects and drives the connection on the current runtime.
pub async fn connect(url: &str) -> Result<Client, StoreError> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|source| StoreError::Connect {
            url: url.to_string(),
            source,
        })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "salesdb connection ended");
        }
    });
    Ok(client)
}

/// Reads the salesmen and sales the generator may refer to.
pub async fn existing(client: &Client) -> Result<Existing, StoreError> {
    let salesmen = client
        .query(
            "SELECT id, city_id FROM salesman WHERE city_id IS NOT NULL ORDER BY id",
            &[],
        )
        .await
        .map_err(|source| StoreError::Statement {
            doing: "reading salesmen",
            source,
        })?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let sales = client
        .query("SELECT id FROM sale ORDER BY id", &[])
        .await
        .map_err(|source| StoreError::Statement {
            doing: "reading sales",
            source,
        })?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(Existing { salesmen, sales })
}

/// Applies each change in its own transaction (so Debezium sees one commit per change, as a
/// till would produce them). Returns how many rows changed.
pub async fn apply(client: &Client, changes: &[Change]) -> Result<u64, StoreError> {
    let mut rows = 0;
    for change in changes {
        let result = match change {
            Change::Insert {
                salesman_id,
                city_id,
                amount,
                day_of_year,
            } => {
                let day = i32::try_from(*day_of_year).unwrap_or(0);
                client
                    .execute(
                        "INSERT INTO sale (salesman_id, city_id, amount, sold_at) \
                         VALUES ($1, $2, $3::text::numeric, \
                                 timestamptz '2026-01-01 09:00:00+00' + make_interval(days => $4))",
                        &[salesman_id, city_id, &amount.to_string(), &day],
                    )
                    .await
            }
            Change::Update {
                sale_id,
                amount,
                moved_to: Some((salesman_id, city_id)),
            } => client
                .execute(
                    "UPDATE sale SET amount = $2::text::numeric, salesman_id = $3, city_id = $4, \
                         updated_at = now() WHERE id = $1",
                    &[sale_id, &amount.to_string(), salesman_id, city_id],
                )
                .await,
            Change::Update {
                sale_id,
                amount,
                moved_to: None,
            } => client
                .execute(
                    "UPDATE sale SET amount = $2::text::numeric, updated_at = now() WHERE id = $1",
                    &[sale_id, &amount.to_string()],
                )
                .await,
            Change::Delete { sale_id } => {
                client
                    .execute("DELETE FROM sale WHERE id = $1", &[sale_id])
                    .await
            }
        };
        rows += result.map_err(|source| StoreError::Statement {
            doing: "applying a sample change",
            source,
        })?;
    }
    Ok(rows)
}
