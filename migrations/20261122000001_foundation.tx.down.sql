DROP TABLE IF EXISTS process_metrics;
DROP TABLE IF EXISTS rollup_minute;
DROP TABLE IF EXISTS ingest_batches;
DROP FUNCTION IF EXISTS opsflow_ensure_request_logs_partition(date);
DROP TABLE IF EXISTS request_logs;
DROP TABLE IF EXISTS api_keys;
