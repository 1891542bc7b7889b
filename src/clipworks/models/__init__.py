"""The CLIP model: registry of sizes, layers, the two towers, tokenizer, image transforms, inference copies."""
