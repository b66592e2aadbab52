fn main() -> std::process::ExitCode {
    sqm::cli::main()
}
