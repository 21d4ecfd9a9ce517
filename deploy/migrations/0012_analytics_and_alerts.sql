-- Analytics aggregates kept by services/analytics from sendarix.events, and deliverability alerts.
--
-- Every dimension is NOT NULL ('' = not known) so that it can be part of the primary key the
-- per-batch upsert adds to. The primary key starts with (tenant, granularity, bucket): it is the
-- index that serves a tenant's report over a time range; (granularity, bucket) serves retention.

CREATE TABLE analytics_counts (
    tenant_id        uuid        NOT NULL,
    granularity      text        NOT NULL CHECK (granularity IN ('minute', 'hour', 'day')),
    bucket           timestamptz NOT NULL,
    stream           text        NOT NULL,
    lane             text        NOT NULL,
    category         text        NOT NULL,
    template         text        NOT NULL,
    variant          text        NOT NULL,
    recipient_domain text        NOT NULL,
    event_type       text        NOT NULL,
    reason           text        NOT NULL,  -- the bounce category of bounced/deferred events
    count            bigint      NOT NULL,
    PRIMARY KEY (tenant_id, granularity, bucket, stream, lane, category, template, variant,
                 recipient_domain, event_type, reason)
);
CREATE INDEX analytics_counts_retention ON analytics_counts (granularity, bucket);

-- Accept -> delivered latency: one row per histogram bin (libs.analytics.LATENCY_EDGES_MS).
CREATE TABLE analytics_latency (
    tenant_id        uuid        NOT NULL,
    granularity      text        NOT NULL CHECK (granularity IN ('minute', 'hour', 'day')),
    bucket           timestamptz NOT NULL,
    stream           text        NOT NULL,
    lane             text        NOT NULL,
    category         text        NOT NULL,
    template         text        NOT NULL,
    variant          text        NOT NULL,
    recipient_domain text        NOT NULL,
    bin              smallint    NOT NULL,
    count            bigint      NOT NULL,
    PRIMARY KEY (tenant_id, granularity, bucket, stream, lane, category, template, variant,
                 recipient_domain, bin)
);
CREATE INDEX analytics_latency_retention ON analytics_latency (granularity, bucket);

-- The last offset of each partition of the event stream whose events are in the aggregates,
-- written in the same transaction as them: a redelivered record is never counted twice.
CREATE TABLE analytics_offsets (
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    last_offset bigint  NOT NULL,
    PRIMARY KEY (topic, partition)
);

CREATE TABLE alerts (
    id                    uuid             PRIMARY KEY,
    tenant_id             uuid             NOT NULL,
    kind                  text             NOT NULL,
    key                   text,            -- a recipient domain, or NULL for the whole tenant
    severity              text             NOT NULL CHECK (severity IN ('warning', 'critical')),
    value                 double precision NOT NULL,  -- when it opened
    threshold             double precision NOT NULL,
    sample                bigint           NOT NULL,
    window_seconds        integer          NOT NULL,
    opened_at             timestamptz      NOT NULL,
    resolved_at           timestamptz,
    last_value            double precision NOT NULL,
    last_sample           bigint           NOT NULL,
    evaluated_at          timestamptz      NOT NULL,
    opened_published_at   timestamptz,     -- the outbox: a notice not published yet is NULL
    resolved_published_at timestamptz
);
-- An alert opens once: at most one open alert per (tenant, kind, key).
CREATE UNIQUE INDEX alerts_open_once ON alerts (tenant_id, kind, coalesce(key, ''))
    WHERE resolved_at IS NULL;
CREATE INDEX alerts_tenant_opened ON alerts (tenant_id, opened_at DESC);
CREATE INDEX alerts_unpublished ON alerts (opened_at)
    WHERE opened_published_at IS NULL
       OR (resolved_at IS NOT NULL AND resolved_published_at IS NULL);
