"""Shared helpers of the preference tests: TRL 1.16's trainers built around tiny random GPT-2s, so their own loss
code (DPOTrainer._compute_loss, RewardTrainer.compute_loss) runs on tensors we choose. Nothing is downloaded."""
import tempfile

VOCAB, PAD = 30, 30  # tokens t0..t29, then <pad>


def word_tokenizer():
    """A transformers tokenizer over the words t0..t29 and <pad>: what the trainers need to be built."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {f"t{i}": i for i in range(VOCAB)} | {"<pad>": PAD}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="t1")


def gpt2_config(**kw):
    import transformers
    return transformers.GPT2Config(vocab_size=VOCAB + 1, n_positions=32, n_embd=32, n_layer=2, n_head=2,
                                   resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1, eos_token_id=1,
                                   pad_token_id=PAD, **kw)


def dpo_trainer(policy, ref, beta):
    """TRL's DPOTrainer around two GPT2LMHeadModels (the standard sigmoid loss, reference computed on the fly)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer
    data = Dataset.from_list([{"prompt": "t2 t3", "chosen": " t4 t5", "rejected": " t6"}] * 2)
    args = DPOConfig(output_dir=tempfile.mkdtemp(), report_to=[], beta=beta, per_device_train_batch_size=2,
                     use_cpu=True, precompute_ref_log_probs=False)
    return DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=data, processing_class=word_tokenizer())


def reward_trainer(model):
    """TRL's RewardTrainer around a GPT2ForSequenceClassification with one label."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer
    data = Dataset.from_list([{"chosen": "t2 t3 t4", "rejected": "t2 t6"}] * 2)
    args = RewardConfig(output_dir=tempfile.mkdtemp(), report_to=[], per_device_train_batch_size=2, use_cpu=True)
    return RewardTrainer(model=model, args=args, train_dataset=data, processing_class=word_tokenizer())
