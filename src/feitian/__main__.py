from feitian.cli.main import main

main()
