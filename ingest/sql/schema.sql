-- Source schema of the store system (database `salesdb`), captured by Debezium (pgoutput).
-- Idempotent: objects are created only if absent. Run as `tributary` (or as a superuser: the
-- SET ROLE below makes `tributary` own everything either way).
\set ON_ERROR_STOP on
SET ROLE tributary;

CREATE TABLE IF NOT EXISTS city (
    id    bigserial PRIMARY KEY,
    name  text NOT NULL,
    state text NOT NULL
);

CREATE TABLE IF NOT EXISTS salesman (
    id      bigserial PRIMARY KEY,
    code    text NOT NULL UNIQUE,
    name    text NOT NULL,
    city_id bigint REFERENCES city (id)
);

-- No foreign keys from sale to salesman/city on purpose: a sale may name a salesman or city that
-- arrives later (late-arriving dimension); the pipeline keeps it and shows it as unresolved.
CREATE TABLE IF NOT EXISTS sale (
    id          bigserial PRIMARY KEY,
    salesman_id bigint,
    city_id     bigint,
    amount      numeric(12, 2) NOT NULL CHECK (amount >= 0),
    sold_at     timestamptz    NOT NULL,
    updated_at  timestamptz    DEFAULT now()
);

-- Updates and deletes must carry the whole old row in the WAL (Debezium `before` image).
ALTER TABLE city     REPLICA IDENTITY FULL;
ALTER TABLE salesman REPLICA IDENTITY FULL;
ALTER TABLE sale     REPLICA IDENTITY FULL;

-- Debezium writes one row here at every heartbeat (`heartbeat.action.query` in
-- ingest/debezium/salesdb-connector.json). Without it, while the sales tables are quiet, the slot
-- never moves past the WAL other databases of the cluster write (the lake's catalog, the marts'
-- state), and Postgres keeps all of it: after a load the slot held hundreds of MB and grew. The
-- table is in the publication (so its change reaches Debezium and moves the slot) but not in the
-- connector's table.include.list (so it makes no topic).
CREATE TABLE IF NOT EXISTS debezium_heartbeat (
    id smallint PRIMARY KEY CHECK (id = 1),
    at timestamptz NOT NULL
);

-- The publication Debezium reads (publication.autocreate.mode=disabled in the connector).
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_publication WHERE pubname = 'tributary_salesdb') THEN
    CREATE PUBLICATION tributary_salesdb FOR TABLE city, salesman, sale, debezium_heartbeat;
  ELSIF NOT EXISTS (SELECT FROM pg_publication_tables
                    WHERE pubname = 'tributary_salesdb' AND tablename = 'debezium_heartbeat') THEN
    -- a database created before the heartbeat table
    ALTER PUBLICATION tributary_salesdb ADD TABLE debezium_heartbeat;
  END IF;
END
$$;

RESET ROLE;
