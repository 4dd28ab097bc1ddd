# Sourced by scripts/demo: what an ingest's local storage directory holds
# (layout in ingest/src/store/mod.rs).

# stored_fragments DIR: prints how many fragments the storage under DIR
# holds. A fragment counts as stored once its key object exists
# (streams/<device>/<stream>/keys/<seq:020>), as for the ingest itself.
stored_fragments() {
  find "$1" -path '*/streams/*/*/keys/*' -type f -name '[0-9]*' | wc -l
}
