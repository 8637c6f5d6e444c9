"""Request bodies at the HTTP edge: Kaito's `/chat` contract and the OpenAI completions API.

Unknown fields are accepted where the upstream APIs accept them (clients send extras), but every
field we do read is typed, so a wrong type is a 422 naming the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = ""

    def text(self) -> str:
        """Text of the message; OpenAI's content parts of type `text` are joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ValueError("messages: only text content parts are supported")
            parts.append(part["text"])
        return "".join(parts)


class GenerateKwargs(BaseModel):
    """Kaito's `generate_kwargs` (transformers `generate` parameters)."""

    model_config = ConfigDict(extra="allow")

    max_length: int | None = Field(default=None, ge=1)
    max_new_tokens: int | None = Field(default=None, ge=1)
    min_length: int | None = Field(default=None, ge=0)
    do_sample: bool | None = None
    temperature: float | None = Field(default=None, ge=0.0)
    top_k: int | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)
    num_beams: int | None = Field(default=None, ge=1, le=1)
    stop: str | list[str] | None = None


class KaitoChatRequest(BaseModel):
    """`POST /chat`: Kaito's transformers-runtime body (`prompt` or `messages`)."""

    model_config = ConfigDict(extra="allow")

    prompt: str | None = None
    messages: list[Message] | None = None
    return_full_text: bool = True
    clean_up_tokenization_spaces: bool = False
    generate_kwargs: GenerateKwargs = Field(default_factory=GenerateKwargs)
    adapter: str | None = None

    @model_validator(mode="after")
    def _prompt_or_messages(self) -> KaitoChatRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("set exactly one of `prompt` (text) or `messages` (a chat)")
        if self.messages is not None and not self.messages:
            raise ValueError("messages: at least one message is required")
        return self


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class _OpenAICommon(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)
    n: int = Field(default=1, ge=1, le=1, description="only one choice per request is supported")
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = None
    user: str | None = None
    ignore_eos: bool = Field(default=False, description="vLLM's extension: generate exactly max_tokens")

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class ChatCompletionRequest(_OpenAICommon):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class CompletionRequest(_OpenAICommon):
    prompt: str | list[str]
    echo: bool = False

    @model_validator(mode="after")
    def _one_prompt(self) -> CompletionRequest:
        if isinstance(self.prompt, list) and len(self.prompt) != 1:
            raise ValueError("prompt: send one prompt per request (a string or a list of one string)")
        return self

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]
