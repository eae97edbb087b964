from memchat.launcher import main

main()
