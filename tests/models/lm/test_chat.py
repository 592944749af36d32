"""Chat templates from checkpoint folders, rendered with jinja2 as transformers renders them."""

import json

import pytest

from ppl_models.lm.chat import TemplateError, load_chat_template, render_chat

# A ChatML template of the Qwen2 kind (written for this test): a default system turn, the turns,
# and the assistant's generation prompt.
CHATML = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are helpful.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

# A Llama-2-style template that reads bos/eos tokens, rejects bad role orders and uses tojson.
LLAMA = """{{ bos_token }}
{% for m in messages %}
    {% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{ raise_exception('roles must alternate user/assistant') }}
    {% endif %}
    {% if m['role'] == 'user' %}[INST] {{ m['content'] | trim }} [/INST]{% else %} {{ m['content'] | trim }} {{ eos_token }}{% endif %}
{% endfor %}
{% if tools %}{{ tools | tojson }}{% endif %}"""


def _folder(tmp_path, **cfg):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    return tmp_path


def test_chatml_template_renders_turns_and_generation_prompt(tmp_path):
    t = load_chat_template(_folder(tmp_path, chat_template=CHATML, eos_token="<|im_end|>"))
    text = render_chat(t, [{"role": "user", "content": "What is 2+2?"}])
    assert text == ("<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
                    "<|im_start|>assistant\n")
    assert not render_chat(t, [{"role": "user", "content": "x"}], add_generation_prompt=False).endswith("assistant\n")


def test_special_tokens_trim_blocks_tojson_and_raise_exception(tmp_path):
    folder = _folder(tmp_path, chat_template=LLAMA, bos_token={"content": "<s>", "lstrip": False}, eos_token="</s>")
    t = load_chat_template(folder)
    assert t.special_tokens == {"bos_token": "<s>", "eos_token": "</s>"}
    msgs = [{"role": "user", "content": " hi "}, {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "ünïcode"}]
    # trim_blocks drops the newline after a block tag, not after an expression ({{ bos_token }})
    assert render_chat(t, msgs) == "<s>\n[INST] hi [/INST] hello </s>[INST] ünïcode [/INST]"
    assert render_chat(t, msgs[:1], tools=[{"name": "é"}]).endswith('[{"name": "é"}]')
    with pytest.raises(TemplateError, match="roles must alternate"):
        render_chat(t, msgs[1:])
    with pytest.raises(ValueError, match="messages"):
        render_chat(t, ["hi"])


def test_where_templates_come_from(tmp_path):
    assert load_chat_template(_folder(tmp_path, eos_token="</s>")) is None
    _folder(tmp_path, chat_template=[{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}])
    assert load_chat_template(tmp_path).source == "D"
    (tmp_path / "chat_template.jinja").write_text("J{{ messages | length }}")
    assert render_chat(load_chat_template(tmp_path), [{"role": "user", "content": "a"}]) == "J1"
    (tmp_path / "chat_template.jinja").unlink()
    _folder(tmp_path, chat_template=[{"name": "tool_use", "template": "T"}])
    with pytest.raises(TemplateError, match="without a 'default'"):
        load_chat_template(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(TemplateError, match="tokenizer_config.json: not JSON"):
        load_chat_template(tmp_path)
    _folder(tmp_path, chat_template="{% for %}")
    with pytest.raises(TemplateError, match="TemplateSyntaxError"):
        render_chat(load_chat_template(tmp_path), [])
