-- The last event number of the node's agent applied to each server, so that a resent event
-- (after a reconnect) is recognised and not applied twice.
ALTER TABLE servers ADD COLUMN agent_seq INTEGER NOT NULL DEFAULT 0;
