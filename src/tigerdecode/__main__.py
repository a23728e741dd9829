from tigerdecode.cli import main

main()
