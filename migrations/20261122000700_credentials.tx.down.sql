DROP TABLE IF EXISTS credential_refreshes;
DROP TABLE IF EXISTS credentials;
