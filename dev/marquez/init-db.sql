-- Marquez's own database on the stack's Postgres, owned by `tributary` (see ingest/sql/bootstrap.sql).
-- Run as a superuser with psql (uses \gexec). Idempotent. compose runs it once from
-- docker-entrypoint-initdb.d (after bootstrap.sql, which creates the role).
\set ON_ERROR_STOP on
SELECT 'CREATE DATABASE marquez OWNER tributary'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'marquez') \gexec
