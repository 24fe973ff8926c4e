-- pushd SQLite schema, version 1.
--
-- The columns of the record tables are those of pushd/storage/_tables.py, in
-- the same order.  Lists and key/value fields are JSON text; bytes are BLOBs;
-- times are ISO 8601 text.  Deduplicating tables carry a UNIQUE index on
-- their key (INSERT OR IGNORE); replacing tables are updated in place, so a
-- record keeps the id of its first version.

-- One row: the number of the last script applied (each script sets it).
CREATE TABLE schema_version (
    version INTEGER NOT NULL
);

CREATE TABLE devices (
    sn TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    ip TEXT NOT NULL,
    alias TEXT NOT NULL,
    "group" TEXT NOT NULL,
    push_version TEXT NOT NULL,
    language TEXT NOT NULL,
    device_type TEXT NOT NULL,
    pushcommkey TEXT NOT NULL,
    firmware TEXT NOT NULL,
    info TEXT NOT NULL,
    options TEXT NOT NULL,
    settings TEXT NOT NULL,
    stamps TEXT NOT NULL,
    hybrid TEXT NOT NULL,
    crypto TEXT NOT NULL
);

-- Per-device state of the crypto transport (keys, sequence numbers): secrets,
-- kept apart from the device record that the API shows.
CREATE TABLE crypto_state (
    sn TEXT PRIMARY KEY,
    state BLOB NOT NULL
);

CREATE TABLE attendance (
    id INTEGER PRIMARY KEY,
    sn TEXT NOT NULL,
    pin TEXT NOT NULL,
    time TEXT NOT NULL,
    status TEXT NOT NULL,
    verify TEXT NOT NULL,
    workcode TEXT NOT NULL,
    extra TEXT NOT NULL,
    raw BLOB,
    received TEXT NOT NULL,
    cmd_id TEXT
);
CREATE UNIQUE INDEX attendance_key ON attendance (sn, pin, time, status, verify, workcode);
CREATE INDEX attendance_time ON attendance (time);

CREATE TABLE operations (
    id INTEGER PRIMARY KEY,
    sn TEXT NOT NULL,
    op_type TEXT NOT NULL,
    op_who TEXT NOT NULL,
    time TEXT NOT NULL,
    "values" TEXT NOT NULL,
    raw BLOB,
    received TEXT NOT NULL
);
CREATE UNIQUE INDEX operations_key ON operations (sn, op_type, op_who, time, "values");
CREATE INDEX operations_sn ON operations (sn);
CREATE INDEX operations_time ON operations (time);

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    sn TEXT NOT NULL,
    pin TEXT NOT NULL,
    name TEXT NOT NULL,
    privilege TEXT NOT NULL,
    password TEXT NOT NULL,
    card TEXT NOT NULL,
    "group" TEXT NOT NULL,
    tz TEXT NOT NULL,
    verify TEXT NOT NULL,
    vice_card TEXT NOT NULL,
    fields TEXT NOT NULL,
    raw BLOB,
    updated TEXT NOT NULL
);
CREATE UNIQUE INDEX users_key ON users (pin);

-- Which devices sent each user (a user is server-wide, keyed by pin).
CREATE TABLE device_users (
    pin TEXT NOT NULL,
    sn TEXT NOT NULL,
    PRIMARY KEY (pin, sn)
) WITHOUT ROWID;
CREATE INDEX device_users_sn ON device_users (sn);

CREATE TABLE fingerprints (
    id INTEGER PRIMARY KEY,
    sn TEXT NOT NULL,
    pin TEXT NOT NULL,
    fid TEXT NOT NULL,
    size TEXT NOT NULL,
    valid TEXT NOT NULL,
    template TEXT NOT NULL,
    size_ok INTEGER NOT NULL,
    fields TEXT NOT NULL,
    raw BLOB,
    updated TEXT NOT NULL
);
CREATE UNIQUE INDEX fingerprints_key ON fingerprints (pin, fid);
CREATE INDEX fingerprints_sn ON fingerprints (sn);

CREATE TABLE faces (
    id INTEGER PRIMARY KEY,
    sn TEXT NOT NULL,
    pin TEXT NOT NULL,
    fid TEXT NOT NULL,
    size TEXT NOT NULL,
    valid TEXT NOT NULL,
    template TEXT NOT NULL,
    size_ok INTEGER NOT NULL,
    fields TEXT NOT NULL,
    raw BLOB,
    updated TEXT NOT NULL
);
CREATE UNIQUE INDEX faces_key ON faces (pin, fid);
CREATE INDEX faces_sn ON faces (sn);

CREATE TABLE veins (
    id INTEGER PRIMARY KEY,
    sn TEXT NOT NULL,
    pin TEXT NOT NULL,
    fid TEXT NOT NULL,
    "index" TEXT NOT NULL,
    size TEXT NOT NULL,
    valid TEXT NOT NULL,
    template TEXT NOT NULL,
    size_ok INTEGER NOT NULL,
    fields TEXT NOT NULL,
    raw BLOB,
    updated TEXT NOT NULL
);
CREATE UNIQUE INDEX veins_key ON veins (pin, fid, "index");
CREATE INDEX veins_sn ON veins (sn);

CREATE TABLE biodata (
    id INTEGER PRIMARY KEY,
    sn TEXT NOT NULL,
    pin TEXT NOT NULL,
    no TEXT NOT NULL,
    "index" TEXT NOT NULL,
    valid TEXT NOT NULL,
    duress TEXT NOT NULL,
    type TEXT NOT NULL,
    major_ver TEXT NOT NULL,
    minor_ver TEXT NOT NULL,
    format TEXT NOT NULL,
    template TEXT NOT NULL,
    size_ok INTEGER NOT NULL,
    fields TEXT NOT NULL,
    raw BLOB,
    updated TEXT NOT NULL
);
CREATE UNIQUE INDEX biodata_key ON biodata (pin, type, no, "index");
CREATE INDEX biodata_sn ON biodata (sn);

CREATE TABLE userphotos (
    id INTEGER PRIMARY KEY,
    sn TEXT NOT NULL,
    pin TEXT NOT NULL,
    file_name TEXT NOT NULL,
    size TEXT NOT NULL,
    content TEXT NOT NULL,
    size_ok INTEGER NOT NULL,
    fields TEXT NOT NULL,
    raw BLOB,
    updated TEXT NOT NULL
);
CREATE UNIQUE INDEX userphotos_key ON userphotos (pin);
CREATE INDEX userphotos_sn ON userphotos (sn);

CREATE TABLE biophotos (
    id INTEGER PRIMARY KEY,
    sn TEXT NOT NULL,
    pin TEXT NOT NULL,
    file_name TEXT NOT NULL,
    type TEXT NOT NULL,
    no TEXT NOT NULL,
    "index" TEXT NOT NULL,
    size TEXT NOT NULL,
    content TEXT NOT NULL,
    size_ok INTEGER NOT NULL,
    fields TEXT NOT NULL,
    raw BLOB,
    updated TEXT NOT NULL
);
CREATE UNIQUE INDEX biophotos_key ON biophotos (pin, type, no, "index");
CREATE INDEX biophotos_sn ON biophotos (sn);

CREATE TABLE attphotos (
    id INTEGER PRIMARY KEY,
    sn TEXT NOT NULL,
    name TEXT NOT NULL,
    time TEXT NOT NULL,
    photo_type TEXT NOT NULL,
    pin TEXT NOT NULL,
    id_num TEXT NOT NULL,
    size TEXT NOT NULL,
    stored_size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    path TEXT NOT NULL,
    headers TEXT NOT NULL,
    received TEXT NOT NULL
);
CREATE UNIQUE INDEX attphotos_key ON attphotos (sn, name);
CREATE INDEX attphotos_pin ON attphotos (pin);
CREATE INDEX attphotos_time ON attphotos (time);

CREATE TABLE idcards (
    id INTEGER PRIMARY KEY,
    sn TEXT NOT NULL,
    pin TEXT NOT NULL,
    id_num TEXT NOT NULL,
    sn_num TEXT NOT NULL,
    name TEXT NOT NULL,
    fields TEXT NOT NULL,
    raw BLOB,
    updated TEXT NOT NULL
);
CREATE UNIQUE INDEX idcards_key ON idcards (sn, pin, id_num);
CREATE INDEX idcards_pin ON idcards (pin);

CREATE TABLE errors (
    id INTEGER PRIMARY KEY,
    sn TEXT NOT NULL,
    err_code TEXT NOT NULL,
    err_msg TEXT NOT NULL,
    data_origin TEXT NOT NULL,
    cmd_id TEXT NOT NULL,
    additional TEXT NOT NULL,
    fields TEXT NOT NULL,
    raw BLOB,
    received TEXT NOT NULL
);
CREATE UNIQUE INDEX errors_key
    ON errors (sn, err_code, err_msg, data_origin, cmd_id, additional);
CREATE INDEX errors_cmd_id ON errors (cmd_id);

CREATE TABLE workcodes (
    id INTEGER PRIMARY KEY,
    sn TEXT NOT NULL,
    pin TEXT NOT NULL,
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    fields TEXT NOT NULL,
    raw BLOB,
    updated TEXT NOT NULL
);
CREATE UNIQUE INDEX workcodes_key ON workcodes (pin);
CREATE INDEX workcodes_sn ON workcodes (sn);

CREATE TABLE other (
    id INTEGER PRIMARY KEY,
    sn TEXT NOT NULL,
    kind TEXT NOT NULL,
    fields TEXT NOT NULL,
    raw BLOB,
    received TEXT NOT NULL
);
CREATE UNIQUE INDEX other_key ON other (sn, kind, fields);

CREATE TABLE rejected (
    id INTEGER PRIMARY KEY,
    sn TEXT NOT NULL,
    "table" TEXT NOT NULL,
    line BLOB NOT NULL,
    reason TEXT NOT NULL,
    received TEXT NOT NULL
);
CREATE INDEX rejected_sn ON rejected (sn);

CREATE TABLE replies (
    id INTEGER PRIMARY KEY,
    sn TEXT NOT NULL,
    cmd_id TEXT NOT NULL,
    return_code TEXT NOT NULL,
    cmd TEXT NOT NULL,
    params TEXT NOT NULL,
    lines TEXT NOT NULL,
    content BLOB,
    received TEXT NOT NULL
);
CREATE INDEX replies_sn ON replies (sn);
CREATE INDEX replies_cmd_id ON replies (cmd_id);

CREATE TABLE verifications (
    id INTEGER PRIMARY KEY,
    sn TEXT NOT NULL,
    data BLOB NOT NULL,
    verdict TEXT NOT NULL,
    received TEXT NOT NULL
);
CREATE INDEX verifications_sn ON verifications (sn);

-- PUSH 3.x real-time events (rtlog) and door/alarm states (rtstate).
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    sn TEXT NOT NULL,
    time TEXT NOT NULL,
    pin TEXT NOT NULL,
    card TEXT NOT NULL,
    door TEXT NOT NULL,
    event TEXT NOT NULL,
    event_name TEXT NOT NULL,
    inout TEXT NOT NULL,
    verify TEXT NOT NULL,
    "index" TEXT NOT NULL,
    fields TEXT NOT NULL,
    raw BLOB,
    received TEXT NOT NULL
);
CREATE UNIQUE INDEX events_key ON events (sn, time, event, pin, door, "index");
CREATE INDEX events_time ON events (time);

CREATE TABLE doorstates (
    id INTEGER PRIMARY KEY,
    sn TEXT NOT NULL,
    time TEXT NOT NULL,
    sensor TEXT NOT NULL,
    relay TEXT NOT NULL,
    alarm TEXT NOT NULL,
    door TEXT NOT NULL,
    fields TEXT NOT NULL,
    raw BLOB,
    received TEXT NOT NULL
);
CREATE UNIQUE INDEX doorstates_key ON doorstates (sn, time, sensor, relay, alarm, door);

-- The command queue (spec 12): seq orders delivery (FIFO per device).
CREATE TABLE commands (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    sn TEXT NOT NULL,
    command TEXT NOT NULL,
    kind TEXT NOT NULL,
    family TEXT NOT NULL,
    status TEXT NOT NULL,
    created TEXT NOT NULL,
    sent TEXT NOT NULL,
    completed TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    return_code TEXT,
    reply TEXT NOT NULL
);
CREATE INDEX commands_sn_status ON commands (sn, status, seq);
CREATE INDEX commands_status ON commands (status, seq);

-- Events (CONTRACT 4), written with the data they describe; sinks read them in order.
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    sn TEXT NOT NULL,
    type TEXT NOT NULL,
    time TEXT NOT NULL,
    data TEXT NOT NULL
);

CREATE TABLE sinks (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);

CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY,
    sink TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event TEXT NOT NULL,
    reason TEXT NOT NULL,
    time TEXT NOT NULL
);
CREATE INDEX dead_letters_sink ON dead_letters (sink);

INSERT INTO schema_version (version) VALUES (1);
