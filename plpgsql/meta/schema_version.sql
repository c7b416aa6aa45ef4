-- schema_version(): the highest migration applied to this schema.
-- Locks nothing, changes nothing. Used by App to refuse to run against a
-- schema that is missing migrations this code relies on.
CREATE OR REPLACE FUNCTION {{schema}}.schema_version()
RETURNS integer
LANGUAGE sql
STABLE
AS $fn$
    SELECT coalesce(max(version), 0) FROM {{schema}}.migrations;
$fn$;

COMMENT ON FUNCTION {{schema}}.schema_version() IS
    'Highest migration version applied to this pgdag schema.';
