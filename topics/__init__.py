"""Topic modelling: embeddings, BERTopic fits with stable topic IDs, live assignment (to come)."""
