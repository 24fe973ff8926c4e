-- pushd PostgreSQL schema, version 1.
--
-- The same tables, columns, keys and indexes as sqlite-001.sql, in PostgreSQL
-- types: the columns of the record tables are those of
-- pushd/storage/_tables.py, in the same order.  Lists and key/value fields
-- are JSON text; bytes are BYTEA; times are ISO 8601 text; ids are BIGSERIAL.
-- Text compares and sorts by code point (COLLATE "C"), as in SQLite and
-- Python, whatever the database's locale.
-- Deduplicating tables carry a UNIQUE index on their key (INSERT ... ON
-- CONFLICT DO NOTHING); replacing tables are upserted on theirs (ON CONFLICT
-- (key) DO UPDATE), so a record keeps the id of its first version.
--
-- A B-tree entry holds at most about 2.7 kB, and a device fills some key
-- columns with free text (operation values, error messages, the fields of
-- unknown records): those are indexed by their md5, so a long line is still
-- stored, and still stored once.
--
-- The tables are created in the first schema of the search_path (the store's
-- ``schema`` argument, or the connection's default).  The store applies each
-- script once, in order, in one transaction holding an advisory lock, so two
-- nodes starting together do not both migrate.

-- One row: the number of the last script applied (each script sets it).
CREATE TABLE schema_version (
    version INTEGER NOT NULL
);

CREATE TABLE devices (
    sn TEXT COLLATE "C" PRIMARY KEY,
    state TEXT COLLATE "C" NOT NULL,
    first_seen TEXT COLLATE "C" NOT NULL,
    last_seen TEXT COLLATE "C" NOT NULL,
    ip TEXT COLLATE "C" NOT NULL,
    alias TEXT COLLATE "C" NOT NULL,
    "group" TEXT COLLATE "C" NOT NULL,
    push_version TEXT COLLATE "C" NOT NULL,
    language TEXT COLLATE "C" NOT NULL,
    device_type TEXT COLLATE "C" NOT NULL,
    pushcommkey TEXT COLLATE "C" NOT NULL,
    firmware TEXT COLLATE "C" NOT NULL,
    info TEXT COLLATE "C" NOT NULL,
    options TEXT COLLATE "C" NOT NULL,
    settings TEXT COLLATE "C" NOT NULL,
    stamps TEXT COLLATE "C" NOT NULL,
    hybrid TEXT COLLATE "C" NOT NULL,
    crypto TEXT COLLATE "C" NOT NULL
);

-- Per-device state of the crypto transport (keys, sequence numbers): secrets,
-- kept apart from the device record that the API shows.
CREATE TABLE crypto_state (
    sn TEXT COLLATE "C" PRIMARY KEY,
    state BYTEA NOT NULL
);

CREATE TABLE attendance (
    id BIGSERIAL PRIMARY KEY,
    sn TEXT COLLATE "C" NOT NULL,
    pin TEXT COLLATE "C" NOT NULL,
    time TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    verify TEXT COLLATE "C" NOT NULL,
    workcode TEXT COLLATE "C" NOT NULL,
    extra TEXT COLLATE "C" NOT NULL,
    raw BYTEA,
    received TEXT COLLATE "C" NOT NULL,
    cmd_id TEXT COLLATE "C"
);
CREATE UNIQUE INDEX attendance_key ON attendance (sn, pin, time, status, verify, workcode);
CREATE INDEX attendance_time ON attendance (time);

CREATE TABLE operations (
    id BIGSERIAL PRIMARY KEY,
    sn TEXT COLLATE "C" NOT NULL,
    op_type TEXT COLLATE "C" NOT NULL,
    op_who TEXT COLLATE "C" NOT NULL,
    time TEXT COLLATE "C" NOT NULL,
    "values" TEXT COLLATE "C" NOT NULL,
    raw BYTEA,
    received TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX operations_key ON operations (sn, op_type, op_who, time, md5("values"));
CREATE INDEX operations_sn ON operations (sn);
CREATE INDEX operations_time ON operations (time);

CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    sn TEXT COLLATE "C" NOT NULL,
    pin TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    privilege TEXT COLLATE "C" NOT NULL,
    password TEXT COLLATE "C" NOT NULL,
    card TEXT COLLATE "C" NOT NULL,
    "group" TEXT COLLATE "C" NOT NULL,
    tz TEXT COLLATE "C" NOT NULL,
    verify TEXT COLLATE "C" NOT NULL,
    vice_card TEXT COLLATE "C" NOT NULL,
    fields TEXT COLLATE "C" NOT NULL,
    raw BYTEA,
    updated TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX users_key ON users (pin);

-- Which devices sent each user (a user is server-wide, keyed by pin).
CREATE TABLE device_users (
    pin TEXT COLLATE "C" NOT NULL,
    sn TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (pin, sn)
);
CREATE INDEX device_users_sn ON device_users (sn);

CREATE TABLE fingerprints (
    id BIGSERIAL PRIMARY KEY,
    sn TEXT COLLATE "C" NOT NULL,
    pin TEXT COLLATE "C" NOT NULL,
    fid TEXT COLLATE "C" NOT NULL,
    size TEXT COLLATE "C" NOT NULL,
    valid TEXT COLLATE "C" NOT NULL,
    template TEXT COLLATE "C" NOT NULL,
    size_ok INTEGER NOT NULL,
    fields TEXT COLLATE "C" NOT NULL,
    raw BYTEA,
    updated TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX fingerprints_key ON fingerprints (pin, fid);
CREATE INDEX fingerprints_sn ON fingerprints (sn);

CREATE TABLE faces (
    id BIGSERIAL PRIMARY KEY,
    sn TEXT COLLATE "C" NOT NULL,
    pin TEXT COLLATE "C" NOT NULL,
    fid TEXT COLLATE "C" NOT NULL,
    size TEXT COLLATE "C" NOT NULL,
    valid TEXT COLLATE "C" NOT NULL,
    template TEXT COLLATE "C" NOT NULL,
    size_ok INTEGER NOT NULL,
    fields TEXT COLLATE "C" NOT NULL,
    raw BYTEA,
    updated TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX faces_key ON faces (pin, fid);
CREATE INDEX faces_sn ON faces (sn);

CREATE TABLE veins (
    id BIGSERIAL PRIMARY KEY,
    sn TEXT COLLATE "C" NOT NULL,
    pin TEXT COLLATE "C" NOT NULL,
    fid TEXT COLLATE "C" NOT NULL,
    "index" TEXT COLLATE "C" NOT NULL,
    size TEXT COLLATE "C" NOT NULL,
    valid TEXT COLLATE "C" NOT NULL,
    template TEXT COLLATE "C" NOT NULL,
    size_ok INTEGER NOT NULL,
    fields TEXT COLLATE "C" NOT NULL,
    raw BYTEA,
    updated TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX veins_key ON veins (pin, fid, "index");
CREATE INDEX veins_sn ON veins (sn);

CREATE TABLE biodata (
    id BIGSERIAL PRIMARY KEY,
    sn TEXT COLLATE "C" NOT NULL,
    pin TEXT COLLATE "C" NOT NULL,
    no TEXT COLLATE "C" NOT NULL,
    "index" TEXT COLLATE "C" NOT NULL,
    valid TEXT COLLATE "C" NOT NULL,
    duress TEXT COLLATE "C" NOT NULL,
    type TEXT COLLATE "C" NOT NULL,
    major_ver TEXT COLLATE "C" NOT NULL,
    minor_ver TEXT COLLATE "C" NOT NULL,
    format TEXT COLLATE "C" NOT NULL,
    template TEXT COLLATE "C" NOT NULL,
    size_ok INTEGER NOT NULL,
    fields TEXT COLLATE "C" NOT NULL,
    raw BYTEA,
    updated TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX biodata_key ON biodata (pin, type, no, "index");
CREATE INDEX biodata_sn ON biodata (sn);

CREATE TABLE userphotos (
    id BIGSERIAL PRIMARY KEY,
    sn TEXT COLLATE "C" NOT NULL,
    pin TEXT COLLATE "C" NOT NULL,
    file_name TEXT COLLATE "C" NOT NULL,
    size TEXT COLLATE "C" NOT NULL,
    content TEXT COLLATE "C" NOT NULL,
    size_ok INTEGER NOT NULL,
    fields TEXT COLLATE "C" NOT NULL,
    raw BYTEA,
    updated TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX userphotos_key ON userphotos (pin);
CREATE INDEX userphotos_sn ON userphotos (sn);

CREATE TABLE biophotos (
    id BIGSERIAL PRIMARY KEY,
    sn TEXT COLLATE "C" NOT NULL,
    pin TEXT COLLATE "C" NOT NULL,
    file_name TEXT COLLATE "C" NOT NULL,
    type TEXT COLLATE "C" NOT NULL,
    no TEXT COLLATE "C" NOT NULL,
    "index" TEXT COLLATE "C" NOT NULL,
    size TEXT COLLATE "C" NOT NULL,
    content TEXT COLLATE "C" NOT NULL,
    size_ok INTEGER NOT NULL,
    fields TEXT COLLATE "C" NOT NULL,
    raw BYTEA,
    updated TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX biophotos_key ON biophotos (pin, type, no, "index");
CREATE INDEX biophotos_sn ON biophotos (sn);

CREATE TABLE attphotos (
    id BIGSERIAL PRIMARY KEY,
    sn TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    time TEXT COLLATE "C" NOT NULL,
    photo_type TEXT COLLATE "C" NOT NULL,
    pin TEXT COLLATE "C" NOT NULL,
    id_num TEXT COLLATE "C" NOT NULL,
    size TEXT COLLATE "C" NOT NULL,
    stored_size BIGINT NOT NULL,
    sha256 TEXT COLLATE "C" NOT NULL,
    path TEXT COLLATE "C" NOT NULL,
    headers TEXT COLLATE "C" NOT NULL,
    received TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX attphotos_key ON attphotos (sn, name);
CREATE INDEX attphotos_pin ON attphotos (pin);
CREATE INDEX attphotos_time ON attphotos (time);

CREATE TABLE idcards (
    id BIGSERIAL PRIMARY KEY,
    sn TEXT COLLATE "C" NOT NULL,
    pin TEXT COLLATE "C" NOT NULL,
    id_num TEXT COLLATE "C" NOT NULL,
    sn_num TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    fields TEXT COLLATE "C" NOT NULL,
    raw BYTEA,
    updated TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX idcards_key ON idcards (sn, pin, id_num);
CREATE INDEX idcards_pin ON idcards (pin);

CREATE TABLE errors (
    id BIGSERIAL PRIMARY KEY,
    sn TEXT COLLATE "C" NOT NULL,
    err_code TEXT COLLATE "C" NOT NULL,
    err_msg TEXT COLLATE "C" NOT NULL,
    data_origin TEXT COLLATE "C" NOT NULL,
    cmd_id TEXT COLLATE "C" NOT NULL,
    additional TEXT COLLATE "C" NOT NULL,
    fields TEXT COLLATE "C" NOT NULL,
    raw BYTEA,
    received TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX errors_key
    ON errors (sn, err_code, md5(err_msg), data_origin, cmd_id, md5(additional));
CREATE INDEX errors_cmd_id ON errors (cmd_id);

CREATE TABLE workcodes (
    id BIGSERIAL PRIMARY KEY,
    sn TEXT COLLATE "C" NOT NULL,
    pin TEXT COLLATE "C" NOT NULL,
    code TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    fields TEXT COLLATE "C" NOT NULL,
    raw BYTEA,
    updated TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX workcodes_key ON workcodes (pin);
CREATE INDEX workcodes_sn ON workcodes (sn);

CREATE TABLE other (
    id BIGSERIAL PRIMARY KEY,
    sn TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    fields TEXT COLLATE "C" NOT NULL,
    raw BYTEA,
    received TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX other_key ON other (sn, kind, md5(fields));

CREATE TABLE rejected (
    id BIGSERIAL PRIMARY KEY,
    sn TEXT COLLATE "C" NOT NULL,
    "table" TEXT COLLATE "C" NOT NULL,
    line BYTEA NOT NULL,
    reason TEXT COLLATE "C" NOT NULL,
    received TEXT COLLATE "C" NOT NULL
);
CREATE INDEX rejected_sn ON rejected (sn);

CREATE TABLE replies (
    id BIGSERIAL PRIMARY KEY,
    sn TEXT COLLATE "C" NOT NULL,
    cmd_id TEXT COLLATE "C" NOT NULL,
    return_code TEXT COLLATE "C" NOT NULL,
    cmd TEXT COLLATE "C" NOT NULL,
    params TEXT COLLATE "C" NOT NULL,
    lines TEXT COLLATE "C" NOT NULL,
    content BYTEA,
    received TEXT COLLATE "C" NOT NULL
);
CREATE INDEX replies_sn ON replies (sn);
CREATE INDEX replies_cmd_id ON replies (cmd_id);

CREATE TABLE verifications (
    id BIGSERIAL PRIMARY KEY,
    sn TEXT COLLATE "C" NOT NULL,
    data BYTEA NOT NULL,
    verdict TEXT COLLATE "C" NOT NULL,
    received TEXT COLLATE "C" NOT NULL
);
CREATE INDEX verifications_sn ON verifications (sn);

-- PUSH 3.x real-time events (rtlog) and door/alarm states (rtstate).
CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    sn TEXT COLLATE "C" NOT NULL,
    time TEXT COLLATE "C" NOT NULL,
    pin TEXT COLLATE "C" NOT NULL,
    card TEXT COLLATE "C" NOT NULL,
    door TEXT COLLATE "C" NOT NULL,
    event TEXT COLLATE "C" NOT NULL,
    event_name TEXT COLLATE "C" NOT NULL,
    inout TEXT COLLATE "C" NOT NULL,
    verify TEXT COLLATE "C" NOT NULL,
    "index" TEXT COLLATE "C" NOT NULL,
    fields TEXT COLLATE "C" NOT NULL,
    raw BYTEA,
    received TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX events_key ON events (sn, time, event, pin, door, "index");
CREATE INDEX events_time ON events (time);

CREATE TABLE doorstates (
    id BIGSERIAL PRIMARY KEY,
    sn TEXT COLLATE "C" NOT NULL,
    time TEXT COLLATE "C" NOT NULL,
    sensor TEXT COLLATE "C" NOT NULL,
    relay TEXT COLLATE "C" NOT NULL,
    alarm TEXT COLLATE "C" NOT NULL,
    door TEXT COLLATE "C" NOT NULL,
    fields TEXT COLLATE "C" NOT NULL,
    raw BYTEA,
    received TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX doorstates_key ON doorstates (sn, time, sensor, relay, alarm, door);

-- The command queue (spec 12): seq orders delivery (FIFO per device).
CREATE TABLE commands (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT COLLATE "C" NOT NULL UNIQUE,
    sn TEXT COLLATE "C" NOT NULL,
    command TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    family TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    created TEXT COLLATE "C" NOT NULL,
    sent TEXT COLLATE "C" NOT NULL,
    completed TEXT COLLATE "C" NOT NULL,
    attempts INTEGER NOT NULL,
    return_code TEXT COLLATE "C",
    reply TEXT COLLATE "C" NOT NULL
);
CREATE INDEX commands_sn_status ON commands (sn, status, seq);
CREATE INDEX commands_status ON commands (status, seq);

-- Events (CONTRACT 4), written with the data they describe; sinks read them in order.
-- Writers take turns (an advisory lock held until commit), so seq follows commit order.
CREATE TABLE outbox (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT COLLATE "C" NOT NULL UNIQUE,
    sn TEXT COLLATE "C" NOT NULL,
    type TEXT COLLATE "C" NOT NULL,
    time TEXT COLLATE "C" NOT NULL,
    data TEXT COLLATE "C" NOT NULL
);

CREATE TABLE sinks (
    name TEXT COLLATE "C" PRIMARY KEY,
    position BIGINT NOT NULL
);

CREATE TABLE dead_letters (
    id BIGSERIAL PRIMARY KEY,
    sink TEXT COLLATE "C" NOT NULL,
    event_id TEXT COLLATE "C" NOT NULL,
    event TEXT COLLATE "C" NOT NULL,
    reason TEXT COLLATE "C" NOT NULL,
    time TEXT COLLATE "C" NOT NULL
);
CREATE INDEX dead_letters_sink ON dead_letters (sink);

INSERT INTO schema_version (version) VALUES (1);
