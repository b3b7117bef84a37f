//! The `k5up` command: flags → validated values → the library; errors → exit codes.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
