"""How the bench speaks HTTP: engines that send prepared requests and timestamp every byte received."""
