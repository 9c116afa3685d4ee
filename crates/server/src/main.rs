fn main() -> anyhow::Result<()> {
    smai_server::cli::main()
}
