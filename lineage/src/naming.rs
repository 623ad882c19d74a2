//! Dataset names per the OpenLineage naming conventions, so that the events of every job (and
//! Debezium's) name the same dataset the same way and join into one graph.
//!
//! | system | namespace | name |
//! |---|---|---|
//! | Postgres | `postgres://{host}:{port}` | `{database}.{schema}.{table}` |
//! | Kafka | `kafka://{bootstrap host}:{port}` | `{topic}` |
//! | S3 (objects, Iceberg tables on S3) | `s3://{bucket}` | `{key or table location path}` |
//! | local files | `file` | `{absolute path}` |
//! | ClickHouse | `clickhouse://{host}:{port}` | `{database}.{table}` |

use crate::event::Dataset;

/// Postgres table `database.schema.table` on `host:port`.
pub fn postgres_table(host: &str, port: u16, database: &str, schema: &str, table: &str) -> Dataset {
    Dataset::new(
        format!("postgres://{}:{port}", host.to_ascii_lowercase()),
        format!("{database}.{schema}.{table}"),
    )
}

/// The Kafka namespace of a `bootstrap.servers` list: its first server, `kafka://host:port`
/// (the port defaults to 9092).
pub fn kafka_namespace(bootstrap_servers: &str) -> String {
    let first = bootstrap_servers
        .split(',')
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or("localhost:9092");
    let first = first
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(first);
    if first
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        format!("kafka://{first}")
    } else {
        format!("kafka://{first}:9092")
    }
}

/// Kafka topic `topic` on the cluster reached through `bootstrap_servers`.
pub fn kafka_topic(bootstrap_servers: &str, topic: &str) -> Dataset {
    Dataset::new(kafka_namespace(bootstrap_servers), topic)
}

/// A dataset at a storage location: `s3://bucket/key` → (`s3://bucket`, `key`); `file:///p` or
/// an absolute path `/p` → (`file`, `/p`). Trailing slashes are dropped.
pub fn location(uri: &str) -> Dataset {
    let uri = uri.trim_end_matches('/');
    if let Some(rest) = uri.strip_prefix("file://") {
        return Dataset::new("file", rest.to_string());
    }
    match uri.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            Dataset::new(format!("{scheme}://{authority}"), path.to_string())
        }
        None => Dataset::new("file", uri.to_string()),
    }
}

/// An Iceberg table, named by its location (how OpenLineage's Spark and Flink integrations name
/// Iceberg tables): `{warehouse}/{namespace}/{table}` split into namespace and name.
pub fn iceberg_table(warehouse: &str, namespace: &str, table: &str) -> Dataset {
    location(&format!(
        "{}/{namespace}/{table}",
        warehouse.trim_end_matches('/')
    ))
}

/// ClickHouse table `database.table` on `host:port` (the HTTP port the jobs use).
pub fn clickhouse_table(host: &str, port: u16, database: &str, table: &str) -> Dataset {
    Dataset::new(
        format!("clickhouse://{}:{port}", host.to_ascii_lowercase()),
        format!("{database}.{table}"),
    )
}

/// `host` and `port` of a URL such as `http://127.0.0.1:8123` or `postgres://u:p@h:5432/db`
/// (default port when absent). Pure string handling; enough for naming.
pub fn host_port(url: &str, default_port: u16) -> (String, u16) {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let authority = authority
        .rsplit_once('@')
        .map(|(_, a)| a)
        .unwrap_or(authority);
    match authority.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => {
            (host.to_string(), port.parse().unwrap_or(default_port))
        }
        _ => (authority.to_string(), default_port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_and_kafka_names_follow_the_spec() {
        let t = postgres_table("127.0.0.1", 5432, "salesdb", "public", "sale");
        assert_eq!(
            (t.namespace.as_str(), t.name.as_str()),
            ("postgres://127.0.0.1:5432", "salesdb.public.sale")
        );
        assert_eq!(
            kafka_namespace("127.0.0.1:9092,other:9092"),
            "kafka://127.0.0.1:9092"
        );
        assert_eq!(kafka_namespace("broker"), "kafka://broker:9092");
        assert_eq!(kafka_namespace("PLAINTEXT://b:9093"), "kafka://b:9093");
        assert_eq!(
            kafka_topic("127.0.0.1:9092", "raw.files.sales").name,
            "raw.files.sales"
        );
    }

    #[test]
    fn locations_split_into_namespace_and_name() {
        let s3 = iceberg_table("s3://warehouse", "raw", "pg_sale");
        assert_eq!(
            (s3.namespace.as_str(), s3.name.as_str()),
            ("s3://warehouse", "raw/pg_sale")
        );
        let local = iceberg_table("/srv/lake/", "raw", "pg_sale");
        assert_eq!(
            (local.namespace.as_str(), local.name.as_str()),
            ("file", "/srv/lake/raw/pg_sale")
        );
        let f = location("file:///inbox/acme/a.csv");
        assert_eq!(
            (f.namespace.as_str(), f.name.as_str()),
            ("file", "/inbox/acme/a.csv")
        );
        let key = location("s3://inbox/drop/acme/a.csv");
        assert_eq!(
            (key.namespace.as_str(), key.name.as_str()),
            ("s3://inbox", "drop/acme/a.csv")
        );
    }

    #[test]
    fn clickhouse_and_host_port() {
        let (h, p) = host_port("http://127.0.0.1:8123", 8123);
        let t = clickhouse_table(&h, p, "marts", "city_ranking");
        assert_eq!(t.namespace, "clickhouse://127.0.0.1:8123");
        assert_eq!(t.name, "marts.city_ranking");
        assert_eq!(
            host_port("postgres://u:p@db:6543/x", 5432),
            ("db".to_string(), 6543)
        );
        assert_eq!(host_port("http://ch", 8123), ("ch".to_string(), 8123));
    }
}
