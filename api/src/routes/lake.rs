//! The lake itself: its snapshots (the points time travel reaches) and the dead letters.

use poem_openapi::OpenApi;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;

use super::{ApiResult, ApiTags, LakeRoutes, default_limit};
use crate::dead_letters;
use crate::model::{
    DeadLetterCountsPage, DeadLettersPage, ErpLedgerJson, FileLedgerJson, LedgerPage,
    LedgerPartitionJson, SnapshotsPage,
};

#[OpenApi]
impl LakeRoutes {
    /// Every raw table's snapshots.
    ///
    /// Id, commit time and summary of each snapshot of each raw table, oldest first: the
    /// points `as_of` and `as_of_snapshot` can travel to. 503 when the lake cannot be read.
    #[oai(
        path = "/v1/snapshots",
        method = "get",
        tag = "ApiTags::Lake",
        operation_id = "snapshots"
    )]
    async fn snapshots(&self) -> ApiResult<SnapshotsPage> {
        let tables = self.lake().await?.snapshots().await?;
        Ok(Json(SnapshotsPage {
            tables: tables.into_iter().map(Into::into).collect(),
        }))
    }

    /// The offset-coverage ledger: every consumed Kafka record accounted for.
    ///
    /// For every Kafka partition the lander consumes, what its table's latest commit says
    /// became of each record from the first offset counted up to the table's stored offset
    /// (landed, dead-lettered, tombstone), held against the rows the lake holds: balanced
    /// when every record has one fate, the table and `dead_letters` hold exactly the rows
    /// counted and no offset is there twice. And per version of each partner file, its
    /// records (numbered from 1) and per ERP endpoint its changes (by sequence): each in the
    /// lake once, none of a file missing (exact once what the ingestors sent has landed). Reads three columns of every raw table: one of
    /// the lake requests `limits.lake_concurrency` bounds. 503 when the lake cannot be read.
    #[oai(
        path = "/v1/ledger",
        method = "get",
        tag = "ApiTags::Lake",
        operation_id = "ledger"
    )]
    async fn ledger(&self) -> ApiResult<LedgerPage> {
        let lake = self.lake().await?;
        let partitions: Vec<LedgerPartitionJson> =
            lake.ledger().await?.into_iter().map(Into::into).collect();
        let (files, erp) = lake.source_ledger().await?;
        let files: Vec<FileLedgerJson> = files.into_iter().map(Into::into).collect();
        let erp: Vec<ErpLedgerJson> = erp.into_iter().map(Into::into).collect();
        let unbalanced = (partitions.iter().filter(|p| !p.balanced).count()
            + files.iter().filter(|f| !f.balanced).count()
            + erp.iter().filter(|e| !e.balanced).count()) as u64;
        Ok(Json(LedgerPage {
            balanced: unbalanced == 0,
            unbalanced,
            partitions,
            files,
            erp,
        }))
    }

    /// Dead letters: the records that were rejected.
    ///
    /// Every record an ingestor or the lander rejected, from the lake table
    /// `raw.dead_letters`, newest first, with its reason and the record itself. Filter by
    /// `source` and `kind`; page with `limit`/`offset`. 503 when the lake cannot be read.
    #[oai(
        path = "/v1/dead-letters",
        method = "get",
        tag = "ApiTags::DeadLetters",
        operation_id = "dead_letters"
    )]
    async fn dead_letters(
        &self,
        /// Only this source: `pg` (Debezium's topics), `files`, `erp`, or `unknown`.
        #[oai(validator(pattern = "^(pg|files|erp|unknown)$"))]
        source: Query<Option<String>>,
        /// Only this kind of failure (`error_kind`, e.g. `bad_amount`; the counts list them).
        #[oai(validator(min_length = 1, max_length = 100))]
        kind: Query<Option<String>>,
        /// Dead letters per page, 1..=1000.
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
        /// Dead letters to skip (newest first).
        #[oai(default)]
        offset: Query<u64>,
    ) -> ApiResult<DeadLettersPage> {
        let letters = self.lake().await?.dead_letters().await?;
        let filter = dead_letters::Filter {
            source: source.0,
            kind: kind.0,
        };
        let (items, total) = dead_letters::select(letters, &filter, limit.0, offset.0);
        Ok(Json(DeadLettersPage {
            total,
            limit: limit.0,
            offset: offset.0,
            items: items.into_iter().map(Into::into).collect(),
        }))
    }

    /// Dead letters counted per source and kind.
    ///
    /// How many records each source had rejected, by kind of failure, and when the newest
    /// was landed. 503 when the lake cannot be read.
    #[oai(
        path = "/v1/dead-letters/counts",
        method = "get",
        tag = "ApiTags::DeadLetters",
        operation_id = "dead_letter_counts"
    )]
    async fn dead_letter_counts(&self) -> ApiResult<DeadLetterCountsPage> {
        let letters = self.lake().await?.dead_letters().await?;
        Ok(Json(DeadLetterCountsPage {
            total: letters.len() as u64,
            items: dead_letters::counts(&letters)
                .iter()
                .map(Into::into)
                .collect(),
        }))
    }
}
