"""Shop-the-look beyond matching, on top of the Retriever: look-alikes (cheaper ones too),
complete the look, near-duplicate clusters and a catalog audit."""
