-- 0001 bootstrap: the application's schema and the bookkeeping the migrator
-- itself needs. Later migrations and every plpgsql/ function live in this schema.
CREATE SCHEMA IF NOT EXISTS {{schema}};

-- One row per numbered file of sql/ applied to this schema; never updated.
CREATE TABLE {{schema}}.migrations (
    version integer PRIMARY KEY CHECK (version > 0),
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- One row per file of plpgsql/ with the checksum of the text last installed,
-- so that a migrate run with unchanged sources writes nothing.
CREATE TABLE {{schema}}.installed_functions (
    file text PRIMARY KEY,
    function_name text NOT NULL,
    checksum text NOT NULL,
    installed_at timestamptz NOT NULL DEFAULT now()
);
