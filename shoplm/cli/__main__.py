from shoplm.cli import main

main()
