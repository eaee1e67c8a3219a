from ferroflow.cli import main

main()
