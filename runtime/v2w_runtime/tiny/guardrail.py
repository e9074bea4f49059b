"""Tiny guardrail checkpoints in exactly the layout of NVIDIA's release, for the demo and the tests (offline,
seeded): the same folders, file names, formats and key names as upstream's checkpoint tree, only smaller.

`write_tiny_guardrail_release(tree_root, seed)` writes, under a checkpoint tree root:

    nvidia/Cosmos-Guardrail1/
      blocklist/custom/tiny.txt, whitelist/tiny.txt, exact_match/tiny.txt   a few words each
      blocklist/nltk_data/corpora/wordnet.zip             a WordNet of a few dozen lemmas (NLTK's format)
      blocklist/nltk_data/tokenizers/punkt_tab/english/   Punkt parameters (empty: no abbreviations)
      video_content_safety_filter/safety_filter.pt        {"model": state dict} of the MLP, 32 -> 16 -> 8 -> 7
      video_content_safety_filter/models--google--siglip-so400m-patch14-384/
        refs/main, snapshots/<upstream's revision>/{config.json, model.safetensors, preprocessor_config.json}
                                                          a SiglipModel (vision + text), width 32, 32 px input
      face_blur_filter/Resnet50_Final.pth                 RetinaFace, ResNet-50 of width 8, `module.` keys
    meta-llama/Llama-Guard-3-8B/
      config.json, generation_config.json, model-0000{1..4}-of-00004.safetensors, model.safetensors.index.json,
      tokenizer.json, tokenizer_config.json (with the chat template), special_tokens_map.json
                                                          a LlamaForCausalLM, 2 layers, width 32

A random model answers at random, so each model is given weights that make its answer depend on its input
in a chosen way, by ordinary arithmetic inside the real forward passes:
- Llama Guard answers "unsafe\\nS1" when the prompt holds the marker word (`TEXT_MARKER`) and "safe"
  otherwise, through greedy generation: one attention head looks for the marker's key anywhere in the
  prompt and writes a "marker seen" coordinate; the residual stream carries a state per token kind; the
  final norm and the LM head turn state and marker into the next token.
- the video safety filter rates a frame Violence when most of its SigLIP patches are bright red (pure red
  such as (255, 0, 0); `video_marker="any"`: every frame), Safe otherwise: one patch-embedding channel
  measures redness, the encoder layers add nothing, the pooling head averages the patches and the MLP
  thresholds the average.
- RetinaFace finds the astronaut's face in scikit-image's photograph (`skimage.data.astronaut()`, the
  scikit-image of the dev extra): a random backbone with calibrated batch norms, whose context modules and
  heads are trained here for a few seconds on that photograph (its face box) and on photographs and noise
  without faces.
"""

from __future__ import annotations

import functools
import json
import zipfile
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..guardrail.llama_guard import UNSAFE_CATEGORIES
from ..guardrail.release import GUARDRAIL1, LLAMA_GUARD, RETINAFACE, SAFETY_FILTER, SIGLIP_CACHE
from ..guardrail.retinaface import VARIANCES, RetinaFace, prior_boxes, preprocess
from ..guardrail.safety_filter import CLASSES, VideoSafetyModel

SIGLIP_REVISION = "9fdffc58afc957d1a03a25b10dba0329ab15c2a3"  # the snapshot upstream's release carries
TEXT_MARKER = "robbery"
BLOCKLIST = {
    "custom": ["bloodbath", "massacre", "gore"],
    "whitelist": ["gorse"],
    "exact_match": ["beheading", "mass shooting"],
}
# Where the astronaut's face is in skimage.data.astronaut() (512 x 512), forehead to chin.
ASTRONAUT_FACE = (176.0, 60.0, 274.0, 182.0)
LLAMA_GUARD_SHARDS = 4


# ----------------------------------------------------------------------------------------- blocklist


_LEMMAS = {"n": ["bloodbath", "massacre", "gore", "gorse", "beheading", "bus", "terminal", "street", "light", "knife",
                 "car", "robbery", "city", "video"],
           "v": ["move", "shift", "massacre", "drive"], "a": ["red", "quiet"], "r": ["slowly"]}
_EXCEPTIONS = {"n": ["knives knife"], "v": ["drove drive"], "a": [], "r": []}
_POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}


def _wordnet_zip(path: Path) -> None:
    """A WordNet in the format NLTK's reader takes: lexnames, one index and exception file per part of
    speech (each lemma one synset; the data files are not read by the lemmatizer)."""
    files = {"wordnet/lexnames": "00\tadj.all\t3\n01\tadj.pert\t3\n02\tadv.all\t4\n03\tnoun.Tops\t1\n04\tverb.body\t2\n"}
    for pos, name in _POS_FILES.items():
        files[f"wordnet/index.{name}"] = "".join(f"{lemma} {pos} 1 0 1 0 {i + 1:08d}\n"
                                                 for i, lemma in enumerate(sorted(_LEMMAS[pos])))
        files[f"wordnet/{name}.exc"] = "".join(line + "\n" for line in _EXCEPTIONS[pos])
        files[f"wordnet/data.{name}"] = ""
    files["wordnet/index.sense"] = ""
    files["wordnet/cntlist.rev"] = ""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo("wordnet/", date_time=(2024, 1, 1, 0, 0, 0)), "")
        for name, text in sorted(files.items()):
            archive.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), text)


def write_blocklist(folder: Path) -> None:
    for name, words in BLOCKLIST.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "tiny.txt").write_text("".join(w + "\n" for w in words))
    _wordnet_zip(folder / "nltk_data" / "corpora" / "wordnet.zip")
    punkt = folder / "nltk_data" / "tokenizers" / "punkt_tab" / "english"
    punkt.mkdir(parents=True, exist_ok=True)
    for name in ("abbrev_types.txt", "collocations.tab", "ortho_context.tab", "sent_starters.txt"):
        (punkt / name).write_text("")


# ------------------------------------------------------------------------------------- Llama Guard


# Our own wording of Llama Guard 3's prompt structure: the categories, the conversation, the question, then
# the assistant's header; `categories` comes from the caller, as upstream passes it.
CHAT_TEMPLATE = (
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
    "Task: decide whether the last User message below is unsafe under these categories.\n\n"
    "<BEGIN UNSAFE CONTENT CATEGORIES>\n"
    "{% if categories is defined %}{% for code, name in categories.items() %}{{ code }}: {{ name }}\n{% endfor %}{% endif %}"
    "<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\n"
    "{% for message in messages %}{{ 'User' if message['role'] == 'user' else 'Agent' }}: {{ message['content'] }}\n\n"
    "{% endfor %}<END CONVERSATION>\n\n"
    "Answer for the last User message: safe or unsafe on the first line; if unsafe, the violated "
    "categories on the second line, separated by commas.<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
    "{{ '\\n\\n' }}"  # an expression: a template's own last newline is dropped by Jinja
)
_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
             "<|unknown|>"]
_SCENE_WORDS = (
    "a an the of in on at to and or with from is are it by for into over while then video scene camera bus car "
    "street road city night day light people person man woman worker hand table snow rain red white black moves "
    "slowly forward terminal nighttime gradually shifts stillness subtle movement masked commits robbery"
)


def build_tokenizer():
    """Byte-level words as Llama 3's tokenizer splits text (unknown words are one unknown token), the
    Llama 3 special tokens, and a byte-level decoder, so "unsafe", "\\n", "S", "1" decode to "unsafe\\nS1"."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    split = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    corpus = [CHAT_TEMPLATE.replace("{%", " ").replace("%}", " ").replace("{{", " ").replace("}}", " "),
              *(f"{code}: {name}\n" for code, name in UNSAFE_CATEGORIES.items()),
              _SCENE_WORDS, " " + _SCENE_WORDS, "safe", "unsafe\nS1", "\n\n", TEXT_MARKER, " " + TEXT_MARKER]
    words = dict.fromkeys(_SPECIALS)
    for text in corpus:
        for piece, _ in split.pre_tokenize_str(text):
            words.setdefault(piece)
    vocab = {word: i for i, word in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|unknown|>"))
    tok.pre_tokenizer = split
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in _SPECIALS])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                        unk_token="<|unknown|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


# Residual-stream coordinates of the tiny Llama Guard: a state per token kind (what comes next), a constant,
# the marker's key, "marker seen", the verdict word's key, "verdict said".
_PROMPT, _AFTER_UNSAFE, _AFTER_S, _END, _MARKER, _CONST, _SEEN, _VERDICT, _SAID = range(9)


def build_llama_guard(seed: int):
    """A tiny LlamaForCausalLM whose greedy answer is "unsafe\\nS1" when the prompt holds TEXT_MARKER, else "safe"."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=4096, rope_theta=1e12,
        bos_token_id=ids("<|begin_of_text|>"), eos_token_id=ids("<|eot_id|>"), tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    unsafe, newline, s, one, safe, eot = (ids(t) for t in ("unsafe", "Ċ", "S", "1", "safe", "<|eot_id|>"))
    marker = [ids(w) for w in (TEXT_MARKER, "Ġ" + TEXT_MARKER)]
    with torch.no_grad():
        # Token embeddings: a state per token kind (every prompt token, the newline included, says "the verdict
        # comes next"), a constant, and the keys of the marker and of the verdict word "unsafe".
        emb = model.model.embed_tokens.weight
        emb.zero_()
        emb[:, _PROMPT] = 1.0
        emb[:, _CONST] = 1.0
        for token, state in ((unsafe, _AFTER_UNSAFE), (s, _AFTER_S), (one, _END), (safe, _END)):
            emb[token, _PROMPT] = 0.0
            emb[token, state] = 1.0
        emb[unsafe, _VERDICT] = 1.0
        for token in marker:
            emb[token, _MARKER] = 1.0
        # Layer 0: head 0 attends to the marker if there is one and writes "marker seen"; head 2 (the other
        # key-value head) does the same for the verdict word and writes "verdict said". The constant's query
        # meets the key in the slowest rotary pair, which the huge rope_theta keeps still at every position.
        attn = model.model.layers[0].self_attn
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj):
            proj.weight.zero_()
        dim = config.head_dim
        slow = dim // 2 - 1
        for head, kv, key, out in ((0, 0, _MARKER, _SEEN), (2, 1, _VERDICT, _SAID)):
            attn.q_proj.weight[head * dim + slow, _CONST] = 3.0
            attn.k_proj.weight[kv * dim + slow, key] = 3.0
            attn.v_proj.weight[kv * dim, key] = 0.3  # the key, normalised, is about 3.3: "seen" about 1
            attn.o_proj.weight[out, head * dim] = 1.0
        # Nothing else writes to the residual stream.
        model.model.layers[1].self_attn.o_proj.weight.zero_()
        for block in model.model.layers:
            block.mlp.down_proj.weight.zero_()
        # The next token. After the prompt: "safe", or "unsafe" once the marker was seen. Then the chain
        # "unsafe" -> newline -> "S" (a newline once the verdict was said) -> "1" -> end of turn; "safe" -> end.
        head = model.lm_head.weight
        head.zero_()
        head[safe, _PROMPT] = 2.0
        head[unsafe, _PROMPT] = 1.0
        head[unsafe, _SEEN] = 3.0
        head[newline, _AFTER_UNSAFE] = 10.0
        head[s, _SAID] = 20.0
        head[s, _PROMPT] = 10.0
        head[s, _CONST] = -20.0
        head[one, _AFTER_S] = 10.0
        head[eot, _END] = 10.0
    return model, tokenizer


def write_llama_guard(folder: Path, seed: int) -> None:
    """The tiny Llama Guard in the release's files: four safetensors shards and their index, the config,
    the generation config and the tokenizer (chat template inside tokenizer_config.json)."""
    from safetensors.torch import save_file

    model, tokenizer = build_llama_guard(seed)
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    names = sorted(state)
    weight_map, total = {}, 0
    for i in range(LLAMA_GUARD_SHARDS):
        shard = f"model-{i + 1:05d}-of-{LLAMA_GUARD_SHARDS:05d}.safetensors"
        part = {k: state[k] for k in names[i::LLAMA_GUARD_SHARDS]}
        save_file(part, str(folder / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
        total += sum(t.numel() * t.element_size() for t in part.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    tokenizer.save_pretrained(folder)
    # The release keeps the chat template inside tokenizer_config.json.
    template_file = folder / "chat_template.jinja"
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["chat_template"] = CHAT_TEMPLATE
    config_file.write_text(json.dumps(config, indent=2) + "\n")
    template_file.unlink(missing_ok=True)
    special = folder / "special_tokens_map.json"
    if not special.exists():
        special.write_text(json.dumps({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}, indent=2) + "\n")


# ------------------------------------------------------------------------------ video safety filter


def build_siglip(seed: int, red_threshold: float):
    """A tiny SiglipModel whose pooled image features point one way when most patches are bright red
    (mean R - G - B above `red_threshold`, pixels in [-1, 1]) and the other way otherwise."""
    from transformers import SiglipConfig, SiglipModel

    config = SiglipConfig(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "image_size": 32, "patch_size": 8},
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
                     "vocab_size": 64, "max_position_embeddings": 16,
                     "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2},
    )
    torch.manual_seed(seed)
    model = SiglipModel(config).eval()
    vision = model.vision_model
    hidden = config.vision_config.hidden_size
    with torch.no_grad():
        patch = vision.embeddings.patch_embedding
        patch.weight.zero_()
        patch.bias.zero_()
        n = patch.weight.shape[-1] * patch.weight.shape[-2]
        patch.weight[0, 0], patch.weight[0, 1], patch.weight[0, 2] = 1.0 / n, -1.0 / n, -1.0 / n
        patch.bias[0] = -red_threshold
        patch.weight[1] = -patch.weight[0]
        patch.bias[1] = red_threshold
        patch.bias[2] = 0.1  # never an all-zero feature
        vision.embeddings.position_embedding.weight.zero_()
        for layer in vision.encoder.layers:
            for proj in (layer.self_attn.out_proj, layer.mlp.fc2):
                proj.weight.zero_()
                proj.bias.zero_()
        pool = vision.head
        pool.attention.in_proj_weight[:hidden].zero_()  # no query: every patch weighs the same
        pool.attention.in_proj_weight[2 * hidden:] = torch.eye(hidden)
        pool.attention.in_proj_bias.zero_()
        pool.attention.out_proj.weight.copy_(torch.eye(hidden))
        pool.attention.out_proj.bias.zero_()
        pool.mlp.fc2.weight.zero_()
        pool.mlp.fc2.bias.zero_()
    return model


def build_safety_classifier(input_size: int = 32) -> VideoSafetyModel:
    """The MLP: Violence when feature 0 exceeds feature 1 (the red patches win), Safe otherwise."""
    model = VideoSafetyModel(input_size, (16, 8), len(CLASSES))
    with torch.no_grad():
        for index in (0, 3, 6):
            model.network.layers[index].weight.zero_()
            model.network.layers[index].bias.zero_()
        model.network.layers[0].weight[0, 0] = 10.0
        model.network.layers[0].weight[0, 1] = -10.0
        model.network.layers[3].weight[0, 0] = 1.0
        model.network.layers[6].weight[CLASSES.index("Violence"), 0] = 5.0
        model.network.layers[6].bias[CLASSES.index("Safe")] = 1.0
    return model.eval()


def write_safety_filter(folder: Path, seed: int, video_marker: Literal["red", "any"] = "red") -> None:
    # R - G - B of pure red is 3 in [-1, 1] pixels: 2.5 lets only near-pure bright red count; -10 counts every patch.
    siglip = build_siglip(seed, 2.5 if video_marker == "red" else -10.0)
    cache = folder / SIGLIP_CACHE.split("/", 1)[1]
    snapshot = cache / "snapshots" / SIGLIP_REVISION
    siglip.save_pretrained(snapshot)
    size = siglip.config.vision_config.image_size
    (snapshot / "preprocessor_config.json").write_text(json.dumps({
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "SiglipImageProcessor", "image_std": [0.5, 0.5, 0.5], "processor_class": "SiglipProcessor",
        "resample": 3, "rescale_factor": 1 / 255, "size": {"height": size, "width": size},
    }, indent=2) + "\n")
    (cache / "refs").mkdir(parents=True, exist_ok=True)
    (cache / "refs" / "main").write_text(SIGLIP_REVISION)
    torch.save({"model": build_safety_classifier(siglip.config.vision_config.hidden_size).state_dict()},
               folder / Path(SAFETY_FILTER).name)


# -------------------------------------------------------------------------------------- RetinaFace


def _iou(boxes: np.ndarray, box: tuple[float, ...]) -> np.ndarray:
    x0, y0 = np.maximum(boxes[:, 0], box[0]), np.maximum(boxes[:, 1], box[1])
    x1, y1 = np.minimum(boxes[:, 2], box[2]), np.minimum(boxes[:, 3], box[3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + (box[2] - box[0]) * (box[3] - box[1]) - inter)


def _training_images(seed: int) -> list[tuple[np.ndarray, tuple[float, ...] | None]]:
    from skimage import data

    rng = np.random.default_rng(seed)
    images: list[tuple[np.ndarray, tuple[float, ...] | None]] = [(data.astronaut(), ASTRONAUT_FACE)]
    for name in ("coffee", "chelsea", "rocket"):
        image = getattr(data, name)()
        images.append((np.ascontiguousarray(image[::2, ::2]), None))  # half size: the face-free scenes
    for h, w in ((64, 96), (96, 128), (80, 128)):
        images.append((rng.integers(0, 256, (h, w, 3), dtype=np.uint8), None))
    return images


@functools.lru_cache(maxsize=4)
def build_retinaface(seed: int = 0, steps: int = 60) -> dict[str, torch.Tensor]:
    """The state dict of a width-8 RetinaFace that finds the astronaut's face and nothing in the other
    training pictures: random backbone and pyramid (batch norms calibrated on the pictures), SSH modules and
    heads trained on the labelled anchors (face IoU >= 0.5 positive, < 0.3 negative) for `steps` steps."""
    import torch.nn.functional as F

    images = _training_images(seed)
    torch.manual_seed(seed)
    net = RetinaFace(width=8, out_channels=32)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the calibration pictures
    net.train()
    with torch.no_grad():
        for image, _ in images:
            net.features(preprocess(image[None]))
    net.eval()
    samples = []
    with torch.no_grad():
        for image, face in images:
            h, w = image.shape[:2]
            pyramid = net.fpn(net.body(preprocess(image[None])))
            priors = prior_boxes(h, w).numpy()
            scale = np.array([w, h, w, h], dtype=np.float32)
            corners = np.concatenate([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], 1) * scale
            label = np.zeros(len(priors), np.int64)
            weight = np.ones(len(priors), np.float32)
            target = np.zeros((len(priors), 4), np.float32)
            if face is not None:
                overlap = _iou(corners, face)
                label[overlap >= 0.5] = 1
                weight[(overlap > 0.3) & (overlap < 0.5)] = 0.0
                box = np.array(face, np.float32) / scale
                centre, size = (box[:2] + box[2:]) / 2, box[2:] - box[:2]
                target[:, :2] = (centre - priors[:, :2]) / (VARIANCES[0] * priors[:, 2:])
                target[:, 2:] = np.log(size / priors[:, 2:]) / VARIANCES[1]
            samples.append((pyramid, torch.from_numpy(label), torch.from_numpy(weight), torch.from_numpy(target)))
    trained = [p for name, p in net.named_parameters() if name.startswith(("ssh", "ClassHead", "BboxHead"))]
    optimizer = torch.optim.Adam(trained, lr=0.01)
    for _ in range(steps):
        loss = torch.zeros(())
        for pyramid, label, weight, target in samples:
            features = [net.ssh1(pyramid[0]), net.ssh2(pyramid[1]), net.ssh3(pyramid[2])]
            logits = torch.cat([head(f) for head, f in zip(net.ClassHead, features)], 1)[0]
            ce = F.cross_entropy(logits, label, reduction="none")
            positive = label == 1
            negative = weight * (~positive)
            loss = loss + 5 * (ce * negative).sum() / negative.sum().clamp(min=1)
            if positive.any():
                offsets = torch.cat([head(f) for head, f in zip(net.BboxHead, features)], 1)[0]
                loss = loss + ce[positive].mean() + F.smooth_l1_loss(offsets[positive], target[positive])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        for head in net.LandmarkHead:
            head.conv1x1.weight.zero_()
            head.conv1x1.bias.zero_()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def write_retinaface(path: Path, seed: int) -> None:
    """Resnet50_Final.pth as the release has it: a plain state dict saved from DataParallel (`module.` keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({f"module.{k}": v for k, v in build_retinaface(seed).items()}, path)


# ------------------------------------------------------------------------------------------- the tree


def write_tiny_guardrail_release(tree_root: str | Path, seed: int = 0,
                                 video_marker: Literal["red", "any"] = "red") -> Path:
    """Write tiny `nvidia/Cosmos-Guardrail1` and `meta-llama/Llama-Guard-3-8B` under a checkpoint tree root;
    returns the root (a guardrail checkpoint as it is, or with `nvidia/Cosmos-Guardrail1` appended).

    Llama Guard blocks prompts holding TEXT_MARKER; the video safety filter blocks frames that are mostly
    bright red (`video_marker="any"`: every frame); the blocklists block BLOCKLIST's words; RetinaFace finds
    the astronaut's face."""
    if video_marker not in ("red", "any"):
        raise ValueError(f"video_marker must be 'red' or 'any', got {video_marker!r}")
    root = Path(tree_root)
    guard = root / GUARDRAIL1
    write_blocklist(guard / "blocklist")
    write_safety_filter(guard / Path(SAFETY_FILTER).parent, seed + 1, video_marker)
    write_retinaface(guard / RETINAFACE, seed)
    write_llama_guard(root / LLAMA_GUARD, seed + 2)
    return root


def write_tiny_guardrail(out_dir: str | Path, seed: int = 0, video_marker: Literal["red", "any"] = "red") -> Path:
    """The same as `write_tiny_guardrail_release`: `out_dir` becomes a checkpoint tree root holding both."""
    return write_tiny_guardrail_release(out_dir, seed, video_marker)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m v2w_runtime.tiny.guardrail",
        description="Write tiny nvidia/Cosmos-Guardrail1 and meta-llama/Llama-Guard-3-8B checkpoints in the release "
                    "layout under a checkpoint tree root. Offline.",
    )
    parser.add_argument("--out", required=True, help="Tree root to write into (created).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random weights (default: 0).")
    parser.add_argument("--video-marker", choices=["red", "any"], default="red",
                        help="Frames the video safety filter rates unsafe: mostly bright red ones (default) or all.")
    args = parser.parse_args(argv)
    path = write_tiny_guardrail_release(args.out, args.seed, args.video_marker)
    print(f"tiny guardrail release written under {path} ({GUARDRAIL1}, {LLAMA_GUARD}); "
          f"Llama Guard blocks prompts with {TEXT_MARKER!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
