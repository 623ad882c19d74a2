//! The ingestors' side of the offset-coverage ledger (`/v1/ledger`'s `files` and `erp`): what
//! each source numbered, held against what the lake holds. Pure.
//!
//! A partner file's records are numbered 1, 2, … (`provenance.record` of its sale events and of
//! its dead letters): per version of a file (its `object_url`, `last_modified` and `e_tag`)
//! the lake must hold each number once, with none missing below the highest (a file whose last
//! records never arrived shows only on the ingestor's own progress). The ERP numbers its
//! changes (`provenance.sequence`, strictly increasing): per endpoint the lake must hold each
//! once; numbers missing between are reported (an ERP may skip numbers; the local simulator
//! does not).

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use tributary_raw::ledger::Numbering;

/// One version of one partner file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLedger {
    /// Where it was read from.
    pub object_url: String,
    /// Which version: its `last_modified` and `e_tag`.
    pub version: String,
    /// Its records that became sale events.
    pub sales: u64,
    /// Its records that became dead letters.
    pub dead_letters: u64,
    /// Their numbers, from 1.
    pub records: Numbering,
}

impl FileLedger {
    /// Every record from 1 to the last seen is in the lake once.
    pub fn balanced(&self) -> bool {
        self.records.missing == 0 && self.records.duplicates == 0
    }
}

/// The changes of one ERP endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErpLedger {
    /// The endpoint polled.
    pub endpoint: String,
    /// Changes that became sale events.
    pub sales: u64,
    /// Changes that became dead letters.
    pub dead_letters: u64,
    /// Their sequence numbers.
    pub changes: Numbering,
}

impl ErpLedger {
    /// No change is in the lake twice (numbers the ERP skipped are reported, not counted
    /// against it).
    pub fn balanced(&self) -> bool {
        self.changes.duplicates == 0
    }
}

/// What one lake row says of its source: which source, whether it is a dead letter, and its
/// provenance.
pub struct Mention<'a> {
    /// `files` or `erp` (anything else is not counted here).
    pub source: &'a str,
    /// A dead letter (else a sale event).
    pub dead_letter: bool,
    /// The `provenance` the ingestor gave it.
    pub provenance: &'a Map<String, Value>,
}

/// The file and ERP ledgers of `mentions` (rows without a number, such as a quarantined
/// file's single dead letter or a snapshot's withdrawals, are not numbered and left out).
pub fn ledgers<'a>(
    mentions: impl IntoIterator<Item = Mention<'a>>,
) -> (Vec<FileLedger>, Vec<ErpLedger>) {
    let text = |p: &Map<String, Value>, key: &str| match p.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let mut files: BTreeMap<(String, String), (u64, u64, Vec<i64>)> = BTreeMap::new();
    let mut erp: BTreeMap<String, (u64, u64, Vec<i64>)> = BTreeMap::new();
    for m in mentions {
        let number_key = match m.source {
            "files" => "record",
            "erp" => "sequence",
            _ => continue,
        };
        let Some(number) = m.provenance.get(number_key).and_then(Value::as_i64) else {
            continue;
        };
        let entry = match m.source {
            "files" => {
                let key = (
                    text(m.provenance, "object_url"),
                    format!(
                        "{} {}",
                        text(m.provenance, "last_modified"),
                        text(m.provenance, "e_tag")
                    ),
                );
                files.entry(key).or_default()
            }
            _ => erp.entry(text(m.provenance, "endpoint")).or_default(),
        };
        if m.dead_letter {
            entry.1 += 1;
        } else {
            entry.0 += 1;
        }
        entry.2.push(number);
    }
    (
        files
            .into_iter()
            .map(
                |((object_url, version), (sales, dead_letters, numbers))| FileLedger {
                    object_url,
                    version,
                    sales,
                    dead_letters,
                    records: Numbering::of(numbers, Some(1)),
                },
            )
            .collect(),
        erp.into_iter()
            .map(|(endpoint, (sales, dead_letters, numbers))| ErpLedger {
                endpoint,
                sales,
                dead_letters,
                changes: Numbering::of(numbers, None),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provenance(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn a_file_balances_when_each_record_is_there_once_sale_or_dead_letter() {
        let version = |record: i64| {
            provenance(
                json!({"object_url": "s3://inbox/acme/a.csv", "last_modified": "t1",
                              "e_tag": "e1", "record": record}),
            )
        };
        let (one, two, three) = (version(1), version(2), version(3));
        let quarantine = provenance(json!({"object_url": "s3://inbox/acme/b.csv"}));
        let (files, erp) = ledgers([
            Mention {
                source: "files",
                dead_letter: false,
                provenance: &one,
            },
            Mention {
                source: "files",
                dead_letter: true,
                provenance: &two,
            },
            Mention {
                source: "files",
                dead_letter: false,
                provenance: &three,
            },
            Mention {
                source: "files",
                dead_letter: true,
                provenance: &quarantine,
            },
        ]);
        assert!(erp.is_empty());
        assert_eq!(
            files.len(),
            1,
            "the quarantined file has no numbered record"
        );
        assert_eq!((files[0].sales, files[0].dead_letters), (2, 1));
        assert!(files[0].balanced(), "{files:?}");

        let (files, _) = ledgers([
            Mention {
                source: "files",
                dead_letter: false,
                provenance: &two,
            },
            Mention {
                source: "files",
                dead_letter: false,
                provenance: &three,
            },
            Mention {
                source: "files",
                dead_letter: false,
                provenance: &three,
            },
        ]);
        assert_eq!(
            (files[0].records.missing, files[0].records.duplicates),
            (1, 1)
        );
        assert!(!files[0].balanced());
    }

    #[test]
    fn the_erp_balances_unless_a_change_is_there_twice() {
        let change = |sequence: i64| {
            provenance(json!({"endpoint": "http://erp/ws", "cursor": "c", "sequence": sequence}))
        };
        let (a, b, d) = (change(5), change(6), change(8));
        let (_, erp) = ledgers([
            Mention {
                source: "erp",
                dead_letter: false,
                provenance: &a,
            },
            Mention {
                source: "erp",
                dead_letter: true,
                provenance: &b,
            },
            Mention {
                source: "erp",
                dead_letter: false,
                provenance: &d,
            },
            Mention {
                source: "pg",
                dead_letter: false,
                provenance: &d,
            },
        ]);
        assert_eq!(
            (
                erp[0].changes.first,
                erp[0].changes.last,
                erp[0].changes.missing
            ),
            (5, 8, 1)
        );
        assert!(
            erp[0].balanced(),
            "a number the ERP skipped is not an overlap"
        );
        let (_, twice) = ledgers([
            Mention {
                source: "erp",
                dead_letter: false,
                provenance: &a,
            },
            Mention {
                source: "erp",
                dead_letter: false,
                provenance: &a,
            },
        ]);
        assert!(!twice[0].balanced());
    }
}
