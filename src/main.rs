//! The `latchkey` binary: everything is in the library.

fn main() -> std::process::ExitCode {
    latchkey::cli::main()
}
