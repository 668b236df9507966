# The entry's image. PyPI's torch wheel for Linux carries the CUDA runtime, so the same image
# trains on a GPU when the container is given one (docker run --gpus all) and on the CPU
# otherwise. Nothing is fetched at run time.
FROM python:3.11.7-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1

## The organisers' three lines: do not edit.
RUN mkdir /physionet
COPY ./ /physionet
WORKDIR /physionet

## Install the runtime packages.
RUN pip install -r requirements.txt
