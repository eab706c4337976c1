// The comparable task of the Graphile Worker baseline (scripts/bench.sh): what a job of the service does to the
// database at its core, in one transaction: append an event row with a jsonb body, upsert a projection row.
// Named queries are prepared once per connection, like the service's statements.
const INSERT_EVENT = {
  name: "bench_insert_event",
  text: "INSERT INTO bench_events (stream_id, event_type, data) VALUES ($1, 'created', $2)",
};
const UPSERT_PROJECTION = {
  name: "bench_upsert_projection",
  text:
    "INSERT INTO bench_projection (id, data, version, updated_at) VALUES ($1, $2, 1, now()) " +
    "ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, version = bench_projection.version + 1, " +
    "updated_at = now()",
};

module.exports = async (payload, helpers) => {
  await helpers.withPgClient(async (client) => {
    await client.query("BEGIN");
    try {
      await client.query({ ...INSERT_EVENT, values: [payload.id, payload] });
      await client.query({ ...UPSERT_PROJECTION, values: [payload.id, payload] });
      await client.query("COMMIT");
    } catch (error) {
      await client.query("ROLLBACK");
      throw error;
    }
  });
};
