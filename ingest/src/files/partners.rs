//! The partner mapping file: which folder of the inbox belongs to which partner, how their
//! files are written, and which of their columns is which field of the canonical sale.
//!
//! A new partner is a new section in this file, nothing else. TOML or YAML, chosen by the
//! file's extension. See `ingest/partners.toml` for a commented example.

use std::collections::BTreeMap;
use std::path::Path;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Whether a partner's files are deltas or full snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileMode {
    /// Each file adds or corrects sales; a sale missing from a later file is left alone.
    #[default]
    Incremental,
    /// Each file is the partner's complete list: a sale sent before and missing from the new
    /// file is withdrawn (a delete event).
    Snapshot,
}

/// CSV dialect of a partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsvOptions {
    /// Field delimiter (one ASCII character).
    pub delimiter: char,
    /// Quote character (one ASCII character).
    pub quote: char,
    /// Decimal separator of amounts: `.` or `,`.
    pub decimal_separator: char,
    /// Thousands separator of amounts, if the partner writes one (`.` with a `,` decimal
    /// separator is common in Brazil).
    pub thousands_separator: Option<char>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            delimiter: ',',
            quote: '"',
            decimal_separator: '.',
            thousands_separator: None,
        }
    }
}

/// Which source column (CSV header, or JSON key; `a.b` for a nested JSON key) feeds which
/// canonical field. A salesman is referenced by id or by code, a city by id or by name and
/// state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnMap {
    /// The partner's sale id (required).
    pub sale_id: String,
    /// Salesman id column.
    #[serde(default)]
    pub salesman_id: Option<String>,
    /// Salesman code column.
    #[serde(default)]
    pub salesman_code: Option<String>,
    /// City id column.
    #[serde(default)]
    pub city_id: Option<String>,
    /// City name column (with `city_state`).
    #[serde(default)]
    pub city_name: Option<String>,
    /// City state column (with `city_name`).
    #[serde(default)]
    pub city_state: Option<String>,
    /// Amount column (required).
    pub amount: String,
    /// Sale time column (required).
    pub sold_at: String,
    /// Currency column, if the partner sends one.
    #[serde(default)]
    pub currency: Option<String>,
}

/// One partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partner {
    /// Folder of the inbox holding this partner's files; defaults to the partner's name.
    #[serde(default)]
    pub folder: Option<String>,
    /// Deltas or full snapshots.
    #[serde(default)]
    pub mode: FileMode,
    /// CSV dialect (ignored for JSON and NDJSON).
    #[serde(default)]
    pub csv: CsvOptions,
    /// Column mapping.
    pub columns: ColumnMap,
    /// `chrono` format of `sold_at` when it is not RFC 3339 (e.g. `%d/%m/%Y %H:%M`, or
    /// `%Y-%m-%d` for a date alone, taken as midnight).
    #[serde(default)]
    pub sold_at_format: Option<String>,
    /// UTC offset applied to `sold_at` values without one (e.g. `-03:00`); default UTC.
    #[serde(default)]
    pub utc_offset: Option<String>,
    /// The only currency accepted (the retailer sells in one country); rows in another
    /// currency are rejected. Only checked when the partner sends a currency column.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Amounts above this are rejected as absurd.
    #[serde(default = "default_max_amount")]
    pub max_amount: Decimal,
}

fn default_currency() -> String {
    "BRL".into()
}

fn default_max_amount() -> Decimal {
    Decimal::new(100_000_000, 2)
}

impl Partner {
    /// The inbox folder of this partner.
    pub fn folder<'a>(&'a self, name: &'a str) -> &'a str {
        self.folder.as_deref().unwrap_or(name)
    }
}

/// The whole mapping file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partners {
    /// Partners by name (the name is the `origin` of their sales).
    #[serde(default)]
    pub partners: BTreeMap<String, Partner>,
}

/// The mapping file is unreadable or inconsistent.
#[derive(Debug, thiserror::Error)]
pub enum PartnersError {
    /// The file could not be read.
    #[error("cannot read partner mapping {path}: {source}")]
    Read {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML/YAML for this structure.
    #[error("partner mapping {path} is invalid: {message}")]
    Parse {
        /// Path.
        path: String,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// The file's extension is neither TOML nor YAML.
    #[error("partner mapping {path}: use a .toml, .yaml or .yml file")]
    UnknownFormat {
        /// Path.
        path: String,
    },
    /// A partner's section does not make sense.
    #[error("partner {partner:?}: {problem}")]
    Invalid {
        /// Partner name.
        partner: String,
        /// What is wrong.
        problem: String,
    },
}

impl Partners {
    /// Reads and validates a TOML or YAML mapping file.
    pub fn load(path: &Path) -> Result<Self, PartnersError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PartnersError::Read {
            path: shown.clone(),
            source,
        })?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let partners: Partners = match ext.as_deref() {
            Some("toml") => toml::from_str(&text).map_err(|e| PartnersError::Parse {
                path: shown.clone(),
                message: e.to_string(),
            })?,
            Some("yaml" | "yml") => {
                serde_yaml::from_str(&text).map_err(|e| PartnersError::Parse {
                    path: shown.clone(),
                    message: e.to_string(),
                })?
            }
            _ => return Err(PartnersError::UnknownFormat { path: shown }),
        };
        partners.validate()?;
        Ok(partners)
    }

    /// Checks each partner: references resolvable, dialect sane, folders distinct.
    pub fn validate(&self) -> Result<(), PartnersError> {
        let mut folders = BTreeMap::new();
        for (name, p) in &self.partners {
            let invalid = |problem: &str| PartnersError::Invalid {
                partner: name.clone(),
                problem: problem.to_string(),
            };
            if name.is_empty() || name.contains('/') {
                return Err(invalid("a partner name must be non-empty and without '/'"));
            }
            let folder = p.folder(name);
            if folder.is_empty() || folder.contains('/') || folder.starts_with('_') {
                return Err(invalid(
                    "folder must be one path segment, not starting with '_' (reserved)",
                ));
            }
            if let Some(other) = folders.insert(folder.to_string(), name.clone()) {
                return Err(invalid(&format!(
                    "folder {folder:?} is also partner {other:?}'s"
                )));
            }
            let c = &p.columns;
            if c.salesman_id.is_none() && c.salesman_code.is_none() {
                return Err(invalid(
                    "columns: map salesman_id or salesman_code (or both)",
                ));
            }
            if c.city_id.is_none() && (c.city_name.is_none() || c.city_state.is_none()) {
                return Err(invalid(
                    "columns: map city_id, or city_name together with city_state",
                ));
            }
            for (what, ch) in [("delimiter", p.csv.delimiter), ("quote", p.csv.quote)] {
                if !ch.is_ascii() || ch == '\n' || ch == '\r' {
                    return Err(invalid(&format!(
                        "csv.{what} must be one ASCII character other than a line break"
                    )));
                }
            }
            if !matches!(p.csv.decimal_separator, '.' | ',') {
                return Err(invalid("csv.decimal_separator must be '.' or ','"));
            }
            if p.csv.thousands_separator == Some(p.csv.decimal_separator) {
                return Err(invalid(
                    "csv.thousands_separator must differ from the decimal separator",
                ));
            }
            if let Some(offset) = &p.utc_offset {
                offset
                    .parse::<chrono::FixedOffset>()
                    .map_err(|_| invalid(&format!("utc_offset {offset:?} is not like -03:00")))?;
            }
        }
        Ok(())
    }

    /// The partner owning an inbox folder.
    pub fn by_folder(&self, folder: &str) -> Option<(&str, &Partner)> {
        self.partners
            .iter()
            .find(|(name, p)| p.folder(name) == folder)
            .map(|(name, p)| (name.as_str(), p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[partners.acme]
mode = "snapshot"
csv = { delimiter = ";", decimal_separator = ",", thousands_separator = "." }
columns = { sale_id = "pedido", salesman_code = "vendedor", city_name = "cidade", city_state = "uf", amount = "valor", sold_at = "data" }
sold_at_format = "%d/%m/%Y %H:%M"
utc_offset = "-03:00"

[partners.globex]
folder = "globex-exports"
columns = { sale_id = "id", salesman_id = "rep.id", city_id = "city", amount = "total", sold_at = "ts", currency = "ccy" }
"#;

    fn load_str(text: &str, ext: &str) -> Result<Partners, PartnersError> {
        let dir = std::env::temp_dir().join(format!("partners-{}", uuid_like()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("partners.{ext}"));
        std::fs::write(&path, text).unwrap();
        Partners::load(&path)
    }

    fn uuid_like() -> String {
        format!(
            "{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        )
    }

    #[test]
    fn loads_toml_with_defaults() {
        let partners = load_str(EXAMPLE, "toml").unwrap();
        let acme = &partners.partners["acme"];
        assert_eq!(acme.mode, FileMode::Snapshot);
        assert_eq!(acme.csv.delimiter, ';');
        assert_eq!(acme.csv.quote, '"', "default quote");
        assert_eq!(acme.currency, "BRL");
        assert_eq!(acme.max_amount, Decimal::new(100_000_000, 2));
        let (name, globex) = partners.by_folder("globex-exports").unwrap();
        assert_eq!(name, "globex");
        assert_eq!(globex.mode, FileMode::Incremental);
        assert!(partners.by_folder("globex").is_none());
    }

    #[test]
    fn loads_yaml() {
        let yaml = "partners:\n  initech:\n    columns:\n      sale_id: id\n      salesman_code: rep\n      city_id: city\n      amount: amount\n      sold_at: at\n";
        let partners = load_str(yaml, "yaml").unwrap();
        assert_eq!(partners.partners["initech"].columns.amount, "amount");
    }

    #[test]
    fn refuses_inconsistent_partners_with_the_reason() {
        let no_city = "[partners.x]\ncolumns = { sale_id = \"a\", salesman_id = \"b\", city_name = \"c\", amount = \"d\", sold_at = \"e\" }\n";
        let err = load_str(no_city, "toml").unwrap_err().to_string();
        assert!(err.contains("city_name together with city_state"), "{err}");

        let typo = "[partners.x]\nmod = \"snapshot\"\ncolumns = { sale_id = \"a\", salesman_id = \"b\", city_id = \"c\", amount = \"d\", sold_at = \"e\" }\n";
        let err = load_str(typo, "toml").unwrap_err().to_string();
        assert!(err.contains("mod"), "{err}");

        let reserved = "[partners.x]\nfolder = \"_quarantine\"\ncolumns = { sale_id = \"a\", salesman_id = \"b\", city_id = \"c\", amount = \"d\", sold_at = \"e\" }\n";
        let err = load_str(reserved, "toml").unwrap_err().to_string();
        assert!(err.contains("reserved"), "{err}");

        assert!(matches!(
            load_str(EXAMPLE, "ini"),
            Err(PartnersError::UnknownFormat { .. })
        ));
    }
}
