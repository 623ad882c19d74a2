//! Which Kafka topic feeds which raw table: the lander's routing, and how readers of
//! `dead_letters` tell which source a rejected record came from.

use serde::{Deserialize, Serialize};
use tributary_common::names;

use crate::schema::RawTable;

/// Which topic feeds which table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Feeds `pg_sale`.
    pub sale: String,
    /// Feeds `pg_salesman`.
    pub salesman: String,
    /// Feeds `pg_city`.
    pub city: String,
    /// Feeds `file_sale`.
    pub file_sales: String,
    /// The file ingestor's rejected records, landed in `dead_letters`.
    pub file_dead_letters: String,
    /// Feeds `erp_sale`.
    pub erp_sales: String,
    /// The WS ingestor's rejected records, landed in `dead_letters`.
    pub erp_dead_letters: String,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            sale: names::TOPIC_PG_SALE.into(),
            salesman: names::TOPIC_PG_SALESMAN.into(),
            city: names::TOPIC_PG_CITY.into(),
            file_sales: names::TOPIC_FILE_SALES.into(),
            file_dead_letters: names::TOPIC_FILE_DEAD_LETTERS.into(),
            erp_sales: names::TOPIC_ERP_SALES.into(),
            erp_dead_letters: names::TOPIC_ERP_DEAD_LETTERS.into(),
        }
    }
}

/// What the lander does with a topic's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// Decode and land them in this data table (undecodable ones go to `dead_letters`).
    Data(RawTable),
    /// They are records an ingestor rejected for this data table: land each in
    /// `dead_letters` with the ingestor's reason.
    Rejects(RawTable),
}

impl Route {
    /// The data table the records are about (metric label).
    pub fn data_table(self) -> RawTable {
        match self {
            Route::Data(t) | Route::Rejects(t) => t,
        }
    }

    /// The table whose snapshot offsets say how far this topic was landed.
    pub fn landed_in(self) -> RawTable {
        match self {
            Route::Data(t) => t,
            Route::Rejects(_) => RawTable::DeadLetters,
        }
    }
}

impl TopicsConfig {
    /// `(topic, route)` pairs.
    pub fn routes(&self) -> Vec<(String, Route)> {
        vec![
            (self.sale.clone(), Route::Data(RawTable::PgSale)),
            (self.salesman.clone(), Route::Data(RawTable::PgSalesman)),
            (self.city.clone(), Route::Data(RawTable::PgCity)),
            (self.file_sales.clone(), Route::Data(RawTable::FileSale)),
            (
                self.file_dead_letters.clone(),
                Route::Rejects(RawTable::FileSale),
            ),
            (self.erp_sales.clone(), Route::Data(RawTable::ErpSale)),
            (
                self.erp_dead_letters.clone(),
                Route::Rejects(RawTable::ErpSale),
            ),
        ]
    }
}
