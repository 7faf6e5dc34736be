from hipper.cli import main

main()
