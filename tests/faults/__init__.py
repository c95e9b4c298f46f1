"""The fault catalogue: hostile and unlucky inputs, one module per family, each a named case.

Every case is generated in its test (no stored hostile files) and runs where a regression can
only fail, never hang CI or eat the machine: a case that could hang or grow runs in a child
process under ``bounded.run_bounded``, with a wall-clock limit, an address-space limit and its
peak resident memory measured, and asserts what the evaluator must do instead (a clear error, a
skipped part with its reason, exact counts). The families:

* ``test_config``: configuration bombs, oversized values, values the platform cannot hold,
  ``--print-config`` round trips;
* ``test_regex``: user regexes against names anyone can write;
* ``test_trial_bytes``: tensor records and trial files that claim more than they hold, typed
  errors from every parser of trial bytes;
* ``test_class_indices``: sparse, huge class indices;
* ``test_storage``: symlink loops, unreadable folders, S3 bodies that break mid-read, a
  listing that keeps failing;
* ``test_files``: what is written (temporaries after ``kill -9``, a full disk) and what is
  logged (forged lines);
* ``test_server``: the metrics and health endpoints under load.
"""
