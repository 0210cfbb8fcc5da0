"""Public hand datasets (H2O, ARCTIC) read into the project's sequences, and HaMeR pseudo-labels."""
