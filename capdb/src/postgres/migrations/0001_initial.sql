-- The whole schema of the PostgreSQL backend (the SQLite backend's 0001 and 0002 together).
-- Ids are UUIDs in their text form, collated bytewise ("C") so that `ORDER BY id` is the same
-- order as the ids' own and does not depend on the server's locale. Timestamps are milliseconds
-- since the epoch; permission sets are the bits of a u64 stored as BIGINT.

CREATE TABLE users (
    id TEXT COLLATE "C" PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    totp_secret TEXT,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX users_order ON users(created_at, id);

CREATE TABLE roles (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    permissions BIGINT NOT NULL,
    builtin BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);

CREATE TABLE user_roles (
    user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role_id TEXT COLLATE "C" NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX user_roles_role ON user_roles(role_id);

CREATE TABLE nodes (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    fqdn TEXT NOT NULL,
    memory_mb BIGINT NOT NULL,
    memory_overallocate BIGINT NOT NULL,
    disk_mb BIGINT NOT NULL,
    disk_overallocate BIGINT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE templates (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    spec JSONB NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE servers (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    owner_id TEXT COLLATE "C" NOT NULL REFERENCES users(id),
    node_id TEXT COLLATE "C" NOT NULL REFERENCES nodes(id),
    template_id TEXT COLLATE "C" NOT NULL REFERENCES templates(id),
    memory_mb BIGINT NOT NULL,
    swap_mb BIGINT NOT NULL,
    cpu_percent BIGINT NOT NULL,
    disk_mb BIGINT NOT NULL,
    io_weight BIGINT NOT NULL,
    pids BIGINT NOT NULL,
    environment JSONB NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    -- The last event number of the node's agent applied to the server, so that a resent event
    -- (after a reconnect) is recognised and not applied twice.
    agent_seq BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX servers_owner ON servers(owner_id);
CREATE INDEX servers_node ON servers(node_id);
CREATE INDEX servers_template ON servers(template_id);
CREATE INDEX servers_order ON servers(created_at, id);

CREATE TABLE allocations (
    id TEXT COLLATE "C" PRIMARY KEY,
    node_id TEXT COLLATE "C" NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    ip TEXT COLLATE "C" NOT NULL,
    port INTEGER NOT NULL,
    server_id TEXT COLLATE "C" REFERENCES servers(id) ON DELETE SET NULL,
    is_primary BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (node_id, ip, port)
);
CREATE INDEX allocations_server ON allocations(server_id);

CREATE TABLE subusers (
    server_id TEXT COLLATE "C" NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    permissions BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (server_id, user_id)
);
CREATE INDEX subusers_user ON subusers(user_id);

CREATE TABLE api_keys (
    id TEXT COLLATE "C" PRIMARY KEY,
    user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    permissions BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    expires_at BIGINT
);
CREATE INDEX api_keys_user ON api_keys(user_id);

CREATE TABLE sessions (
    id TEXT COLLATE "C" PRIMARY KEY,
    user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    refresh_hash TEXT NOT NULL,
    generation BIGINT NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ip TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE refresh_tokens (
    hash TEXT PRIMARY KEY,
    session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions(id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_session ON refresh_tokens(session_id);

CREATE TABLE audit_events (
    -- Insertion order, to order events with equal `at` newest first (SQLite's rowid).
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    id TEXT COLLATE "C" PRIMARY KEY,
    at BIGINT NOT NULL,
    actor_id TEXT COLLATE "C",
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    server_id TEXT COLLATE "C",
    ip TEXT NOT NULL,
    result TEXT NOT NULL,
    detail JSONB NOT NULL
);
CREATE INDEX audit_at ON audit_events(at, seq);
CREATE INDEX audit_actor ON audit_events(actor_id);
CREATE INDEX audit_server ON audit_events(server_id);
