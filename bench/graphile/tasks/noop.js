// The no-op task of the Graphile Worker baseline (scripts/bench.sh): what the queue itself costs per job.
module.exports = async () => {};
