-- Spec 003: reference data a contract request renders (legal entity addresses and contacts, divisions,
-- employees with their party and speciality), maintained by `ehealth-admin reference import` and
-- `division create` / `employee create`; and the `contract_requests` projection.

-- Reference data ---------------------------------------------------------------------------------------------

ALTER TABLE legal_entities
    ADD COLUMN short_name  text,
    ADD COLUMN public_name text,
    ADD COLUMN addresses   jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(addresses) = 'array'),
    ADD COLUMN phones      jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(phones) = 'array'),
    ADD COLUMN email       text;

-- Users are the employees: the person (`party`: first_name, last_name, second_name), the speciality object
-- of document 003, and the position.
ALTER TABLE users
    ADD COLUMN party      jsonb CHECK (party IS NULL OR jsonb_typeof(party) = 'object'),
    ADD COLUMN speciality jsonb CHECK (speciality IS NULL OR jsonb_typeof(speciality) = 'object'),
    ADD COLUMN position   text;

CREATE TABLE divisions (
    id              uuid PRIMARY KEY,
    legal_entity_id uuid NOT NULL REFERENCES legal_entities (id),
    name            text NOT NULL,
    addresses       jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(addresses) = 'array'),
    phones          jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(phones) = 'array'),
    email           text,
    working_hours   jsonb CHECK (working_hours IS NULL OR jsonb_typeof(working_hours) = 'object'),
    mountain_group  boolean NOT NULL DEFAULT false,
    status          text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'INACTIVE')),
    inserted_at     timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX divisions_legal_entity_idx ON divisions (legal_entity_id);

-- Projection of the `contract_request` streams: one row per request, `data` the answer's `data` object
-- (rendered from the events alone, so a rebuild writes the same), the list filters as indexed columns.
CREATE TABLE contract_requests (
    id                         uuid PRIMARY KEY,
    contract_type              text NOT NULL CHECK (contract_type IN ('CAPITATION', 'REIMBURSEMENT')),
    status                     text NOT NULL,
    contractor_legal_entity_id uuid NOT NULL,
    edrpou                     text NOT NULL,
    contract_number            text,
    start_date                 date NOT NULL,
    end_date                   date NOT NULL,
    -- The object key of the newest signed content (`{id}/signed_content/{attempt}`), if any.
    signed_content_key         text,
    data                       jsonb NOT NULL,
    version                    bigint NOT NULL,
    inserted_at                timestamptz NOT NULL,
    updated_at                 timestamptz NOT NULL
);
CREATE INDEX contract_requests_type_status_idx ON contract_requests (contract_type, status, inserted_at DESC);
CREATE INDEX contract_requests_contractor_idx
    ON contract_requests (contractor_legal_entity_id, contract_type, inserted_at DESC);
CREATE INDEX contract_requests_edrpou_idx ON contract_requests (edrpou);
CREATE INDEX contract_requests_contract_number_idx ON contract_requests (contract_number)
    WHERE contract_number IS NOT NULL;
-- The scheduler's question: open requests whose start date has passed.
CREATE INDEX contract_requests_open_start_idx ON contract_requests (start_date)
    WHERE status NOT IN ('SIGNED', 'DECLINED', 'TERMINATED');
