print("warren-agent")
