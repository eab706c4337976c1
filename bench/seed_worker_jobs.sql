-- Pending jobs for the pgbench baseline of the end-to-end path (bench/worker.sql): per client c in
-- [0, clients) the jobs n = base + c * 10^7 + k, k in [1, per_client], with the captured command and actor.
-- psql variables: base, clients, per_client, le.
INSERT INTO jobs (id, type, stream_type, stream_id, command, actor, owner_legal_entity_id, command_hash,
    request_id, eta)
SELECT md5('job' || n)::uuid, 'service_request.create', 'service_request', md5('stream' || n)::uuid,
    '{"id": "1bc3e7a0-d3ff-4147-a2e6-94fba6537423", "code": "LAB-001", "action": "create", "category": "laboratory_procedure", "patient_id": "a5243c4f-10da-42b9-92e3-4fca1f6a8ee4", "program_id": "4bee8fab-2a99-43ce-9dc5-c0adf13141bf", "expiration_date": null}',
    '{"user_id": "5d8a81b6-3c79-42b9-91e9-0a4ad2bf3682", "client_type": "MSP", "legal_entity_id": "2ec46154-fadf-4d46-80e7-aa86213b4604"}',
    :'le', 'pgbench-' || n, 'c0ffee00-0000-4000-8000-000000000000', now() + interval '5 seconds'
FROM (SELECT :base::bigint + c * 10000000 + k AS n
      FROM generate_series(0, :clients - 1) AS c, generate_series(1, :per_client) AS k) AS s;
