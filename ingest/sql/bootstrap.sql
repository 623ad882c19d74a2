-- Roles and databases of the Tributary stack. Run as a superuser, with psql (uses \gexec).
-- Idempotent: safe to run on every `dev/up`; compose runs it once from docker-entrypoint-initdb.d.
--
-- `tributary` is deliberately NOT a superuser: LOGIN + REPLICATION (Debezium's pgoutput slot)
-- + CREATEDB (tests may create scratch databases), and the owner of `salesdb` (sources, so it can
-- create the tables and the publication) and of `tributary` (Iceberg SQL catalog, API state).
-- That is the least privilege Debezium documents, so local runs catch permission bugs that a
-- superuser would hide. Administration uses the `postgres` superuser over the local socket.
\set ON_ERROR_STOP on

DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tributary') THEN
    CREATE ROLE tributary LOGIN REPLICATION CREATEDB PASSWORD 'tributary';
  ELSE
    ALTER ROLE tributary LOGIN REPLICATION CREATEDB PASSWORD 'tributary';
  END IF;
END
$$;

SELECT 'CREATE DATABASE salesdb OWNER tributary'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'salesdb') \gexec
SELECT 'CREATE DATABASE tributary OWNER tributary'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'tributary') \gexec

-- compose's image creates salesdb itself (POSTGRES_DB): hand it over to tributary.
ALTER DATABASE salesdb OWNER TO tributary;
ALTER DATABASE tributary OWNER TO tributary;
