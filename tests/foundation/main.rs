//! Integration tests of the foundation: the CLI's configuration handling and exit codes, both
//! migration sets on one and on two databases, and `scripts/init.sh` against a real cluster.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod init_script;
mod migrations;
