"""Pure helpers of the etcd PKI deploy: settings, the per-host certificate plan,
certificate checks and release artefacts. Nothing here imports pyinfra."""
