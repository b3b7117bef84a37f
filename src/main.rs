//! The `k5up` command: everything is in the library's `cli` module.

fn main() -> std::process::ExitCode {
    k5up::cli::main()
}
