//! Integration tests of the foundation: the CLI's configuration handling and exit codes, both
//! migration sets on one and on two databases, `scripts/init.sh` against a real cluster, and
//! what `etl replicate` does before it reaches a source (logs, metrics port).

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod init_script;
mod layers;
mod migrations;
mod replicate_startup;
