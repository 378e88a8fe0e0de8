"""Special token ids shared by every tokenizer, the model and the pipeline."""

PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
UNK_ID = 3
