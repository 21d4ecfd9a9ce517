-- Templates as a product: a template is a named head with immutable versions, one of them active;
-- a version holds every locale's sources, its declared variables and the layout version it pins.
-- Layouts (a tenant's shared wrapper) are versioned the same way. Experiments split a template's
-- traffic between its active version and one variant version.

CREATE TABLE layouts (
    tenant_id  uuid        NOT NULL,
    alias      text        NOT NULL,
    name       text        NOT NULL,
    latest_version integer NOT NULL DEFAULT 0,
    archived_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, alias)
);

CREATE TABLE layout_versions (
    tenant_id  uuid        NOT NULL,
    alias      text        NOT NULL,
    version    integer     NOT NULL,
    html       text,                      -- a Jinja2 source with {{ content }} where the body goes
    text       text,
    note       text,
    created_by text,                      -- the API key id (NULL: the CLI)
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, alias, version),
    FOREIGN KEY (tenant_id, alias) REFERENCES layouts ON DELETE CASCADE
);

ALTER TABLE templates RENAME TO legacy_templates;

CREATE TABLE templates (
    tenant_id      uuid        NOT NULL,
    alias          text        NOT NULL,   -- what requests give as "template"
    name           text        NOT NULL,
    category       text,                   -- the kind of mail it is (otp: no experiments)
    active_version integer,                -- NULL: no version activated yet
    latest_version integer     NOT NULL DEFAULT 0,
    archived_at    timestamptz,            -- archived: sends are refused, versions kept
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, alias)
);

CREATE TABLE template_versions (
    tenant_id      uuid        NOT NULL,
    alias          text        NOT NULL,
    version        integer     NOT NULL,
    default_locale text        NOT NULL DEFAULT 'en',
    contents       jsonb       NOT NULL,   -- {"en": {"subject", "html", "text"}, "pt-BR": {...}}
    variables      jsonb       NOT NULL DEFAULT '[]',  -- [schemas.templates.TemplateVariable]
    layout_alias   text,
    layout_version integer,
    note           text,
    created_by     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, alias, version),
    FOREIGN KEY (tenant_id, alias) REFERENCES templates ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, layout_alias, layout_version) REFERENCES layout_versions
);

-- The versions of the old per-locale table become one version each, with every locale's newest
-- sources, active at once (what render used to pick).
INSERT INTO templates (tenant_id, alias, name, active_version, latest_version)
SELECT DISTINCT tenant_id, name, name, 1, 1 FROM legacy_templates;

INSERT INTO template_versions (tenant_id, alias, version, default_locale, contents)
SELECT tenant_id, name, 1,
       CASE WHEN bool_or(locale = 'en') THEN 'en' ELSE min(locale) END,
       jsonb_object_agg(locale, jsonb_build_object('subject', subject, 'html', html, 'text', text))
FROM (
    SELECT DISTINCT ON (tenant_id, name, locale) tenant_id, name, locale, subject, html, text
    FROM legacy_templates ORDER BY tenant_id, name, locale, version DESC
) newest
GROUP BY tenant_id, name;

DROP TABLE legacy_templates;

CREATE TABLE template_experiments (
    id               uuid        PRIMARY KEY,
    tenant_id        uuid        NOT NULL,
    alias            text        NOT NULL,
    variant_version  integer     NOT NULL,
    percent          numeric(5, 2) NOT NULL CHECK (percent > 0 AND percent <= 50),
    starts_at        timestamptz NOT NULL,
    ends_at          timestamptz NOT NULL CHECK (ends_at > starts_at),
    override_critical boolean    NOT NULL DEFAULT false,
    stopped_at       timestamptz,
    created_by       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, alias) REFERENCES templates ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, alias, variant_version) REFERENCES template_versions
);
CREATE INDEX template_experiments_template ON template_experiments (tenant_id, alias, starts_at);

-- The message log names what a message was rendered from.
ALTER TABLE messages ADD COLUMN layout_version integer, ADD COLUMN locale text;
