-- The whole schema of the MySQL/MariaDB backend (the SQLite backend's 0001 and 0002 together).
-- Every table is InnoDB (row locks, foreign keys, transactions) in utf8mb4 with the binary
-- collation: ids and names compare and sort by their bytes, so `ORDER BY id` is the ids' own
-- order and uniqueness is case-sensitive, as in the other backends. Columns that are keys are
-- VARCHAR with a length (an index needs one); the connection's strict sql_mode refuses a longer
-- value instead of truncating it. Timestamps are milliseconds since the epoch; permission sets
-- are the bits of a u64 stored as BIGINT; JSON documents are their text (LONGTEXT, checked to be
-- valid JSON), so MariaDB and MySQL store the same bytes.
-- Every statement creates only what is missing: MySQL commits each DDL statement by itself, so
-- a migration interrupted midway is finished by running it again.

CREATE TABLE IF NOT EXISTS users (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    username VARCHAR(255) NOT NULL,
    email VARCHAR(255) NOT NULL,
    password_hash TEXT NOT NULL,
    totp_secret TEXT NULL,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE KEY users_username (username),
    UNIQUE KEY users_email (email),
    KEY users_order (created_at, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS roles (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    description TEXT NOT NULL,
    permissions BIGINT NOT NULL,
    builtin BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    UNIQUE KEY roles_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS user_roles (
    user_id VARCHAR(36) NOT NULL,
    role_id VARCHAR(36) NOT NULL,
    PRIMARY KEY (user_id, role_id),
    KEY user_roles_role (role_id),
    CONSTRAINT user_roles_user FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE,
    CONSTRAINT user_roles_role FOREIGN KEY (role_id) REFERENCES roles(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS nodes (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    description TEXT NOT NULL,
    fqdn VARCHAR(255) NOT NULL,
    memory_mb BIGINT NOT NULL,
    memory_overallocate BIGINT NOT NULL,
    disk_mb BIGINT NOT NULL,
    disk_overallocate BIGINT NOT NULL,
    token_hash VARCHAR(255) NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE KEY nodes_name (name),
    UNIQUE KEY nodes_token_hash (token_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS templates (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    spec LONGTEXT NOT NULL CHECK (JSON_VALID(spec)),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE KEY templates_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS servers (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    description TEXT NOT NULL,
    owner_id VARCHAR(36) NOT NULL,
    node_id VARCHAR(36) NOT NULL,
    template_id VARCHAR(36) NOT NULL,
    memory_mb BIGINT NOT NULL,
    swap_mb BIGINT NOT NULL,
    cpu_percent BIGINT NOT NULL,
    disk_mb BIGINT NOT NULL,
    io_weight BIGINT NOT NULL,
    pids BIGINT NOT NULL,
    environment LONGTEXT NOT NULL CHECK (JSON_VALID(environment)),
    state VARCHAR(32) NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    -- The last event number of the node's agent applied to the server, so that a resent event
    -- (after a reconnect) is recognised and not applied twice.
    agent_seq BIGINT NOT NULL DEFAULT 0,
    KEY servers_owner (owner_id),
    KEY servers_node (node_id),
    KEY servers_template (template_id),
    KEY servers_order (created_at, id),
    CONSTRAINT servers_owner FOREIGN KEY (owner_id) REFERENCES users(id),
    CONSTRAINT servers_node FOREIGN KEY (node_id) REFERENCES nodes(id),
    CONSTRAINT servers_template FOREIGN KEY (template_id) REFERENCES templates(id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS allocations (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    node_id VARCHAR(36) NOT NULL,
    ip VARCHAR(255) NOT NULL,
    port INT NOT NULL,
    server_id VARCHAR(36) NULL,
    is_primary BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE KEY allocations_address (node_id, ip, port),
    KEY allocations_server (server_id),
    CONSTRAINT allocations_node FOREIGN KEY (node_id) REFERENCES nodes(id) ON DELETE CASCADE,
    CONSTRAINT allocations_server FOREIGN KEY (server_id) REFERENCES servers(id) ON DELETE SET NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS subusers (
    server_id VARCHAR(36) NOT NULL,
    user_id VARCHAR(36) NOT NULL,
    permissions BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (server_id, user_id),
    KEY subusers_user (user_id),
    CONSTRAINT subusers_server FOREIGN KEY (server_id) REFERENCES servers(id) ON DELETE CASCADE,
    CONSTRAINT subusers_user FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS api_keys (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    user_id VARCHAR(36) NOT NULL,
    name VARCHAR(255) NOT NULL,
    prefix VARCHAR(255) NOT NULL,
    secret_hash TEXT NOT NULL,
    permissions BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT NULL,
    expires_at BIGINT NULL,
    UNIQUE KEY api_keys_prefix (prefix),
    KEY api_keys_user (user_id),
    CONSTRAINT api_keys_user FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS sessions (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    user_id VARCHAR(36) NOT NULL,
    refresh_hash VARCHAR(255) NOT NULL,
    generation BIGINT NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ip TEXT NOT NULL,
    KEY sessions_user (user_id),
    CONSTRAINT sessions_user FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS refresh_tokens (
    hash VARCHAR(255) NOT NULL PRIMARY KEY,
    session_id VARCHAR(36) NOT NULL,
    KEY refresh_tokens_session (session_id),
    CONSTRAINT refresh_tokens_session FOREIGN KEY (session_id) REFERENCES sessions(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS audit_events (
    -- Insertion order, to order events with equal `at` newest first (SQLite's rowid).
    seq BIGINT NOT NULL AUTO_INCREMENT,
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    at BIGINT NOT NULL,
    actor_id VARCHAR(36) NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    server_id VARCHAR(36) NULL,
    ip TEXT NOT NULL,
    result VARCHAR(32) NOT NULL,
    detail LONGTEXT NOT NULL CHECK (JSON_VALID(detail)),
    UNIQUE KEY audit_seq (seq),
    KEY audit_at (at, seq),
    KEY audit_actor (actor_id),
    KEY audit_server (server_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
