-- Secrets are now sealed bound to where they belong (tenant, object kind, object id, field: the
-- associated data of their AES-GCM encryption), so a ciphertext copied to another row or field
-- no longer opens. Rows sealed before keep `secrets_bound = false` until the control plane seals
-- them again: SQL cannot, it has no keys. `etl serve-api` does it when it starts and
-- `etl api rotate-key` does it too, each in one transaction; new rows are written bound.
alter table app.sources add column secrets_bound boolean not null default false;
alter table app.destinations add column secrets_bound boolean not null default false;
