"""What a merge leaves behind: model and adapter directories, their model cards, `enmp merge`'s output."""
