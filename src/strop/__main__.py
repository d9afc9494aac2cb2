from strop.cli.main import main

main()
